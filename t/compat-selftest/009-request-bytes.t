# Self-test of the compat runner: the exact bytes built for a --- request
# and the parsing of raw responses, checked without nginx.  The functions
# used here exist with the same signatures in the real Test::Nginx::Socket.

use Test::Nginx::Socket;

plan tests => 17;

my $B = \&Test::Nginx::Socket::build_request_from_packets;
my $hdrs = "Host: localhost\r\nConnection: close\r\n";

sub build {
    my ($more, $chunked, $conn, @packets) = @_;
    return $B->('unit', $more, $chunked, $conn, [@packets]);
}

is_deeply(build('', 0, 'close', "GET /t\n"),
          ["GET /t HTTP/1.1\r\n$hdrs\r\n"],
          'URI and HTTP/1.1 default, Host and Connection added');

is_deeply(build('', 0, 'close', "GET"),
          ["GET / HTTP/1.1\r\n$hdrs\r\n"],
          'URI defaults to /');

is_deeply(build('', 0, 'close', "  GET   /t   HTTP/1.0  \n"),
          ["GET /t HTTP/1.0\r\n$hdrs\r\n"],
          'blanks around the request line parts are dropped');

is_deeply(build('', 0, 'keep-alive', "GET /t\n"),
          ["GET /t HTTP/1.1\r\nHost: localhost\r\nConnection: keep-alive\r\n\r\n"],
          'connection header value');

is_deeply(build('', 0, 'close', "POST /t\n  hi there \n"),
          ["POST /t HTTP/1.1\r\n${hdrs}Content-Length: 8\r\n\r\nhi there"],
          'body is trimmed and gets a Content-Length');

is_deeply(build("Content-Length: 3\r\n", 0, 'close', "POST /t\nab\n"),
          ["POST /t HTTP/1.1\r\n${hdrs}Content-Length: 3\r\n\r\nab\n"],
          'explicit Content-Length: body sent untouched');

is_deeply(build("Transfer-Encoding: chunked\r\n", 1, 'close',
                "POST /t\n2\r\nhi\r\n0\r\n\r\n"),
          ["POST /t HTTP/1.1\r\n${hdrs}Transfer-Encoding: chunked\r\n\r\n"
           . "2\r\nhi\r\n0\r\n\r\n"],
          'chunked: no Content-Length, body untouched');

is_deeply(build("host: other\r\nX-A: 1\r\n", 0, 'close', "GET /t\n"),
          ["GET /t HTTP/1.1\r\nConnection: close\r\nhost: other\r\nX-A: 1\r\n\r\n"],
          'a Host header (any case) in more_headers replaces the default');

is_deeply(build('', 0, 'close', "POST /t\nhel", "lo"),
          ["POST /t HTTP/1.1\r\n${hdrs}Content-Length: 5\r\n\r\nhel", "lo"],
          'packet boundaries are kept');

is_deeply(build('', 0, 'close', "GE", "T /t\nx"),
          ["GE", "T /t HTTP/1.1\r\n${hdrs}Content-Length: 1\r\n\r\nx"],
          'a split inside the method');

my ($hdr, $chunked) = Test::Nginx::Socket::parse_more_headers(
    "X-A: 1\n# comment\nX-B:2\nTransfer-Encoding: chunked\n");
is($hdr, "X-A: 1\r\nX-B: 2\r\nTransfer-Encoding: chunked\r\n",
   'more_headers normalised, comments dropped');
ok($chunked, 'chunked request detected');

my $P = \&Test::Nginx::Socket::parse_response;

my ($res, $raw, $left) = $P->('unit',
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n"
    . "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n", 0);
is($res->content, 'abcde', 'chunked body decoded');
is($raw, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n",
   'raw headers');

($res, $raw, $left) = $P->('unit',
    "HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK", 0);
is($res->code . '|' . $res->content . '|' . $left,
   '404|ok|HTTP/1.1 200 OK', 'Content-Length delimits the body');

($res) = $P->('unit', "HTTP/1.1 200 OK\r\nX-M: a\r\nx-m: b\r\n\r\n", 0);
is($res->header('X-M'), 'a, b', 'repeated headers joined');

($res) = $P->('unit', '', 0);
ok(!$res->code, 'no response: no status code');
