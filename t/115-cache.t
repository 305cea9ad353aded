# A response cache on nginx's own proxy_cache (issue 10, docs/cache.md):
# $qwen_cache_key (the endpoint, the deployment, the model sent upstream
# and the rewritten body), $qwen_cache_bypass and $qwen_cache_no_store
# (streams, requests not routed, a client's Cache-Control: no-cache /
# no-store / max-age=0, Pragma: no-cache). A repeat is answered from the
# cache without reaching the upstream; the gateway accounts it as a cache
# hit: priced at zero, its tokens outside qwen_tokens_total, nothing
# charged to the client key's tokens or budget.
#
# Each request names a scenario (X-Mock-Scenario, not part of the key):
# GET /__mock/scenario/ID through the same nginx tells how many requests
# of it reached the mock. A block's bodies carry $$ so that no run finds
# the cache of another.
use Test::Nginx::Socket 'no_plan';
use Digest::SHA ();

repeat_each(1);
no_long_string();
no_shuffle();
# at debug, nginx itself logs the request's headers, the client key of
# TEST 12 with them (the suite's secret scan looks for it everywhere)
log_level('info');

our $KEYS = <<'_EOK_';
{"keys": [{"id": "cache-app", "key": "sk-client-k115-cache-0123456789",
           "limits": {"rpm": 100, "tpm": 100000},
           "budget": {"usd": 1, "period": "day"}}]}
_EOK_

sub chat {
    my ($extra) = @_;
    $extra //= '';
    return "POST /v1/chat/completions\n"
        . '{"model":"c-chat","messages":[{"role":"user","content":"cache ' . $$
        . '"}]' . $extra . '}';
}

# $qwen_cache_key of a chat() request to c-chat at region sg (docs/cache.md)
sub key_of {
    my ($req) = @_;
    my ($uri, $body) = $req =~ m{^POST (\S+)\n(.*)$}s;
    return Digest::SHA::sha256_hex(join "\0", 'qwen-cache-1', $uri, 'sg',
                                   'dashscope', 'c-chat', $body);
}

# the mock's record of a scenario holds exactly N requests
sub requests {
    my ($n) = @_;
    return qr/^\{"requests":\[(?:(?!"method":).)*(?:"method":"POST"(?:(?!"method":).)*){$n}\]\}$/s;
}

add_block_preprocessor(sub {
    my $block = shift;

    if (!defined $block->http_config) {
        $block->set_value("http_config", <<'_EOC_');
    qwen_metrics_zone cache115 1m;
    qwen_region sg url=http://127.0.0.1:$TEST_NGINX_MOCK_PORT path=/compatible-mode key=sk-mock;
    qwen_model c-chat alias=c-alias input=1 output=2;
    proxy_cache_path llm115_cache levels=1:2 keys_zone=llm115:1m max_size=10m;
    log_format c115 'cache=$upstream_cache_status status=$status tokens=$qwen_prompt_tokens+$qwen_completion_tokens cost=$qwen_cost';
_EOC_
    }

    if (!defined $block->config) {
        $block->set_value("config", <<'_EOC_');
    location /v1/ {
        qwen_gateway on;
        proxy_set_header Authorization $qwen_upstream_authorization;
        proxy_set_header X-Mock-Usage "10,5";

        proxy_cache llm115;
        proxy_cache_methods POST;
        proxy_cache_key $qwen_cache_key;
        proxy_cache_bypass $qwen_cache_bypass;
        proxy_no_cache $qwen_cache_no_store;
        proxy_cache_valid 200 10m;
        add_header X-Cache $upstream_cache_status always;

        access_log logs/c115.log c115;
        proxy_pass $qwen_upstream$qwen_upstream_path$uri;
    }
    location /__mock/ { proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT; }
    location = /metrics { qwen_status prometheus; }
    location = /log { alias logs/c115.log; }
_EOC_
    }

    if (!defined $block->no_error_log) {
        $block->set_value("no_error_log", "[error]\n[alert]\n[crit]\n");
    }
});

run_tests();

__DATA__

=== TEST 1: a repeat is served from the cache without reaching the upstream
--- request eval
[main::chat(), main::chat(), "GET /__mock/scenario/c115-1-$$"]
--- more_headers eval
"X-Mock-Scenario: c115-1-$$"
--- error_code eval
[200, 200, 200]
--- response_headers eval
[{"X-Cache" => "MISS"}, {"X-Cache" => "HIT"}, {}]
--- response_body_like eval
[qr/"object":"chat.completion"/, qr/"object":"chat.completion"/,
 main::requests(1)]



=== TEST 2: the hit is accounted at zero cost, as a cache hit, not as upstream tokens
--- request eval
[main::chat(',"n":1'), main::chat(',"n":1'), "GET /metrics", "GET /log"]
--- error_code eval
[200, 200, 200, 200]
--- response_headers eval
[{"X-Cache" => "MISS"}, {"X-Cache" => "HIT"}, {}, {}]
--- response_body_like eval
[qr/chat\.completion/, qr/chat\.completion/,
 qr/qwen_cache_hits_total\{model="c-chat",provider="[^"]*"\} 1\n.*qwen_cache_hit_tokens_total\{model="c-chat",provider="[^"]*"\} 15\n/s
 && qr/qwen_tokens_total\{model="c-chat",provider="[^"]*",type="input"\} 10\n/,
 qr/^cache=MISS status=200 tokens=10\+5 cost=0\.000020000\ncache=HIT status=200 tokens=10\+5 cost=0\.000000000\n$/]



=== TEST 3: upstream token totals leave out the hit, the cost counts the miss only
--- request eval
[main::chat(',"n":3'), main::chat(',"n":3'), main::chat(',"n":3'), "GET /metrics"]
--- error_code eval
[200, 200, 200, 200]
--- response_body_like eval
[qr/chat/, qr/chat/, qr/chat/,
 qr/qwen_tokens_total\{model="c-chat",provider="[^"]*",type="input"\} 10\nqwen_tokens_total\{model="c-chat",provider="[^"]*",type="output"\} 5\n.*qwen_cost_usd_total\{model="c-chat",provider="[^"]*"\} 0\.000020000\n.*qwen_cache_hits_total\{model="c-chat",provider="[^"]*"\} 2\n/s]



=== TEST 4: a different temperature, max_tokens or message misses
--- request eval
[main::chat(',"temperature":0.2'), main::chat(',"temperature":0.7'),
 main::chat(',"max_tokens":10'), main::chat(',"max_tokens":11'),
 "POST /v1/chat/completions\n" . '{"model":"c-chat","messages":[{"role":"user","content":"another ' . $$ . '"}]}',
 main::chat(',"temperature":0.2'),
 "GET /__mock/scenario/c115-4-$$"]
--- more_headers eval
"X-Mock-Scenario: c115-4-$$"
--- error_code eval
[200, 200, 200, 200, 200, 200, 200]
--- response_headers eval
[{"X-Cache" => "MISS"}, {"X-Cache" => "MISS"}, {"X-Cache" => "MISS"},
 {"X-Cache" => "MISS"}, {"X-Cache" => "MISS"}, {"X-Cache" => "HIT"}, {}]
--- response_body_like eval
[qr/chat/, qr/chat/, qr/chat/, qr/chat/, qr/chat/, qr/chat/,
 main::requests(5)]



=== TEST 5: Cache-Control: no-cache from the client goes upstream, and refreshes the entry
--- request eval
[main::chat(',"n":5'), main::chat(',"n":5'), main::chat(',"n":5'),
 "GET /__mock/scenario/c115-5-$$"]
--- more_headers eval
"X-Mock-Scenario: c115-5-$$\nCache-Control: no-cache"
--- error_code eval
[200, 200, 200, 200]
--- response_headers eval
[{"X-Cache" => "BYPASS"}, {"X-Cache" => "BYPASS"}, {"X-Cache" => "BYPASS"}, {}]
--- response_body_like eval
[qr/chat/, qr/chat/, qr/chat/,
 main::requests(3)]



=== TEST 6: Pragma: no-cache and Cache-Control: max-age=0 bypass the lookup too
--- request eval
[main::chat(',"n":6'), main::chat(',"n":6')]
--- more_headers eval
"Pragma: no-cache\nCache-Control: max-age=0"
--- error_code eval
[200, 200]
--- response_headers eval
[{"X-Cache" => "BYPASS"}, {"X-Cache" => "BYPASS"}]



=== TEST 7: no-store: neither looked up nor stored (the next plain request misses)
--- config
    location /v1/ {
        qwen_gateway on;
        proxy_set_header Authorization $qwen_upstream_authorization;
        proxy_cache llm115;
        proxy_cache_methods POST;
        proxy_cache_key $qwen_cache_key;
        proxy_cache_bypass $qwen_cache_bypass $http_x_test_bypass;
        proxy_no_cache $qwen_cache_no_store $http_x_test_no_store;
        proxy_cache_valid 200 10m;
        add_header X-Cache $upstream_cache_status always;
        proxy_pass $qwen_upstream$qwen_upstream_path$uri;
    }
    location = /plain {
        proxy_set_header Cache-Control "";
        proxy_pass http://127.0.0.1:$server_port/v1/chat/completions;
    }
--- request eval
["POST /v1/chat/completions\n" . '{"model":"c-chat","messages":[{"role":"user","content":"store ' . $$ . '"}]}',
 "POST /plain\n" . '{"model":"c-chat","messages":[{"role":"user","content":"store ' . $$ . '"}]}',
 "POST /plain\n" . '{"model":"c-chat","messages":[{"role":"user","content":"store ' . $$ . '"}]}']
--- more_headers
Cache-Control: no-store
--- error_code eval
[200, 200, 200]
--- response_headers eval
[{"X-Cache" => "BYPASS"}, {"X-Cache" => "MISS"}, {"X-Cache" => "HIT"}]



=== TEST 8: a stream is never cached
--- request eval
[main::chat(',"stream":true'), main::chat(',"stream":true'),
 "GET /__mock/scenario/c115-8-$$"]
--- more_headers eval
"X-Mock-Scenario: c115-8-$$"
--- error_code eval
[200, 200, 200]
--- response_headers eval
[{"X-Cache" => "BYPASS"}, {"X-Cache" => "BYPASS"}, {}]
--- response_body_like eval
[qr/data: \[DONE\]/, qr/data: \[DONE\]/,
 main::requests(2)]



=== TEST 9: two names for one upstream model share the entry: the key is of the rewritten body
--- request eval
[main::chat(',"n":9'),
 "POST /v1/chat/completions\n" . '{"model":"c-alias","messages":[{"role":"user","content":"cache ' . $$ . '"}],"n":9}']
--- error_code eval
[200, 200]
--- response_headers eval
[{"X-Cache" => "MISS"}, {"X-Cache" => "HIT"}]



=== TEST 10: a request the gateway refused is not cached (bypass), and the refusal is its own
--- request eval
["POST /v1/chat/completions\n" . '{"model":"no-such-model","messages":[]}',
 "POST /v1/chat/completions\n" . '{"model":"no-such-model","messages":[]}']
--- error_code eval
[404, 404]
--- response_body_like eval
[qr/model_not_found/, qr/model_not_found/]



=== TEST 11: the key: SHA-256 of the endpoint, deployment, provider, model sent and body sent
--- config
    location /v1/ {
        qwen_gateway on;
        proxy_set_header Authorization $qwen_upstream_authorization;
        add_header X-Key "[$qwen_cache_key]" always;
        add_header X-Skip "bypass=[$qwen_cache_bypass] no_store=[$qwen_cache_no_store]" always;
        proxy_pass $qwen_upstream$qwen_upstream_path$uri;
    }
    location = /key { add_header X-Key "[$qwen_cache_key]" always; return 204; }
--- request eval
[main::chat(), "POST /v1/chat/completions\n" . '{"model":"c-alias","messages":[{"role":"user","content":"cache ' . $$ . '"}]}',
 main::chat(',"stream":true'), "GET /key"]
--- error_code eval
[200, 200, 200, 204]
--- response_headers eval
[{"X-Key" => "[" . main::key_of(main::chat()) . "]", "X-Skip" => "bypass=[] no_store=[]"},
 {"X-Key" => "[" . main::key_of(main::chat()) . "]", "X-Skip" => "bypass=[] no_store=[]"},
 {"X-Key" => "[" . main::key_of(main::chat(',"stream":true')) . "]", "X-Skip" => "bypass=[1] no_store=[1]"},
 {"X-Key" => "[]"}]



=== TEST 12: with a client key: a hit charges no tokens and no budget to the key
--- http_config
    qwen_metrics_zone cache115k 1m;
    qwen_keys_file ../html/keys.json;
    qwen_region sg url=http://127.0.0.1:$TEST_NGINX_MOCK_PORT path=/compatible-mode key=sk-mock;
    qwen_model c-chat input=1 output=2;
    proxy_cache_path llm115k_cache levels=1:2 keys_zone=llm115k:1m max_size=10m;
--- config
    location /v1/ {
        qwen_gateway on;
        qwen_keys on;
        proxy_set_header Authorization $qwen_upstream_authorization;
        proxy_set_header X-Mock-Usage "10,5";
        proxy_cache llm115k;
        proxy_cache_methods POST;
        proxy_cache_key $qwen_cache_key;
        proxy_cache_bypass $qwen_cache_bypass;
        proxy_no_cache $qwen_cache_no_store;
        proxy_cache_valid 200 10m;
        add_header X-Cache $upstream_cache_status always;
        proxy_pass $qwen_upstream$qwen_upstream_path$uri;
    }
    location = /key { qwen_keys on; qwen_key_info; }
--- user_files eval
">>> keys.json\n$main::KEYS"
--- request eval
[main::chat(',"n":12'), main::chat(',"n":12'), main::chat(',"n":12'), "GET /key"]
--- more_headers
Authorization: Bearer sk-client-k115-cache-0123456789
--- error_code eval
[200, 200, 200, 200]
--- response_headers eval
[{"X-Cache" => "MISS"}, {"X-Cache" => "HIT"}, {"X-Cache" => "HIT"}, {}]
--- response_body_like eval
[qr/chat/, qr/chat/, qr/chat/,
 qr/"usage":\{"requests_per_minute":3,"tokens_per_minute":15,"concurrent":0\},"budget":\{"usd":1\.000000000,"spent":0\.000020000,/]



=== TEST 13: an upstream Set-Cookie: ignored for caching, hidden from clients (the recipe); without that nginx stores nothing
--- config
    location /v1/ {
        qwen_gateway on;
        proxy_set_header Authorization $qwen_upstream_authorization;
        proxy_set_header X-Mock-Set-Cookie "lb=node-7; Path=/";
        proxy_cache llm115;
        proxy_cache_methods POST;
        proxy_cache_key $qwen_cache_key;
        proxy_cache_bypass $qwen_cache_bypass;
        proxy_no_cache $qwen_cache_no_store;
        proxy_cache_valid 200 10m;
        proxy_ignore_headers Set-Cookie;
        proxy_hide_header Set-Cookie;
        add_header X-Cache $upstream_cache_status always;
        proxy_pass $qwen_upstream$qwen_upstream_path$uri;
    }
    location /plain/ {
        qwen_gateway on;
        proxy_set_header Authorization $qwen_upstream_authorization;
        proxy_set_header X-Mock-Set-Cookie "lb=node-7; Path=/";
        proxy_cache llm115;
        proxy_cache_methods POST;
        proxy_cache_key $qwen_cache_key;
        proxy_cache_bypass $qwen_cache_bypass;
        proxy_no_cache $qwen_cache_no_store;
        proxy_cache_valid 200 10m;
        add_header X-Cache $upstream_cache_status always;
        proxy_pass $qwen_upstream$qwen_upstream_path/v1/chat/completions;
    }
--- request eval
[main::chat(',"n":13'), main::chat(',"n":13'),
 "POST /plain/\n" . '{"model":"c-chat","messages":[{"role":"user","content":"cookie ' . $$ . '"}]}',
 "POST /plain/\n" . '{"model":"c-chat","messages":[{"role":"user","content":"cookie ' . $$ . '"}]}']
--- error_code eval
[200, 200, 200, 200]
--- response_headers eval
[{"X-Cache" => "MISS", "Set-Cookie" => ""}, {"X-Cache" => "HIT", "Set-Cookie" => ""},
 {"X-Cache" => "MISS", "Set-Cookie" => "lb=node-7; Path=/"}, {"X-Cache" => "MISS", "Set-Cookie" => "lb=node-7; Path=/"}]



=== TEST 14: directives are matched whole: x-no-cache, no-cachex, max-age=00 do not bypass; No-Cache="x" does
--- request eval
[main::chat(',"n":14'), main::chat(',"n":14'), main::chat(',"n":14')]
--- more_headers eval
["Cache-Control: x-no-cache, no-cachex, max-age=00",
 "Cache-Control: x-no-cache, no-cachex, max-age=00",
 "Cache-Control: private, No-Cache=\"x\""]
--- error_code eval
[200, 200, 200]
--- response_headers eval
[{"X-Cache" => "MISS"}, {"X-Cache" => "HIT"}, {"X-Cache" => "BYPASS"}]
