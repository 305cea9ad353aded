# The Kubernetes manifests (deploy/k8s, docs/kubernetes.md), checked
# offline: the kustomize base and the example overlay are rendered with
# `kubectl kustomize` (nothing else of kubectl works without a cluster:
# `kubectl create/apply --dry-run=client` both ask a server for its API
# list), every document is parsed (YAML::XS), and what the image's contract
# (docs/container.md) asks of them is checked, each check a test of its
# own so that a broken manifest names what broke.
#
# Then the nginx.conf template of the ConfigMap is rendered as the image's
# entry point would, with the Deployment's environment, and run by the
# real nginx with the module: `nginx -t`, then the probes' paths on the
# probes' ports, a chat completion with the overlay's example client key
# (through the mock DashScope of scripts/run-tests.sh, when there is one),
# and the graceful stop the preStop hook starts.
#
# Prerequisites: scripts/deps.sh k8s (kubectl, libyaml-libyaml-perl); the
# test runs it itself as root when one is missing. Everything it writes
# goes to a temporary directory.
use strict;
use warnings;
use Test::More;
use File::Temp qw(tempdir);
use File::Path qw(make_path);
use File::Copy qw(copy);
use File::Find ();
use File::Basename qw(dirname);
use HTTP::Tiny;
use JSON::PP ();
use MIME::Base64 qw(decode_base64);
use POSIX qw(WNOHANG);
use Time::HiRes qw(sleep time);
use FindBin;
use lib "$FindBin::Bin/lib";
use Qwen::FreePort qw(free_port);

my $repo = $ENV{TEST_NGINX_REPO} || dirname($FindBin::Bin);
my $k8s = "$repo/deploy/k8s";
plan skip_all => "no $k8s" unless -d $k8s;

my $tmp = tempdir('qwen-k8s-XXXXXX', TMPDIR => 1, CLEANUP => 1);

# --------------------------------------------------------------------------
# prerequisites
# --------------------------------------------------------------------------

sub have_kubectl { system('sh', '-c', 'command -v kubectl >/dev/null 2>&1') == 0 }
sub have_yaml    { eval { require YAML::XS; 1 } }

if (!have_kubectl() || !have_yaml()) {
    plan skip_all => 'kubectl or YAML::XS missing: run scripts/deps.sh k8s '
                   . 'as root' if $> != 0;
    my $out = `'$repo/scripts/deps.sh' k8s 2>&1`;
    if ($? != 0 || !have_kubectl() || !have_yaml()) {
        # kubectl (with kustomize v4 or later) is not in every machine's
        # apt sources; Debian bookworm's own kubernetes-client is 1.20,
        # whose kustomize (v2.0.3) reads no current kustomization
        plan skip_all => 'scripts/deps.sh k8s could not install kubectl '
                       . 'and YAML::XS here: ' . (split /\n/, $out)[-1];
    }
}

my $kver = `kubectl version --client -o json 2>/dev/null`;
my ($kmaj, $kmin) = $kver =~ /"kustomizeVersion"\s*:\s*"v?(\d+)\.(\d+)/;
plan skip_all => 'kubectl has no kustomize v4.1 or later (components, '
               . "labels): kubectl version says: $kver"
    unless $kmaj && ($kmaj > 4 || ($kmaj == 4 && $kmin >= 1));

# --------------------------------------------------------------------------
# rendering
# --------------------------------------------------------------------------

# deploy/k8s copied, so that the overlay's .env (the Secret's input, never
# committed) can be made from .env.example without touching the checkout
my $copy = "$tmp/k8s";
make_path($copy);
File::Find::find({ no_chdir => 1, wanted => sub {
    my $rel = substr($_, length $k8s);
    return if $rel eq '';
    if (-d $_) { make_path("$copy$rel") }
    else       { copy($_, "$copy$rel") or die "copy $_: $!" }
} }, $k8s);
my $ex = "$copy/overlays/example";
ok(-f "$ex/.env.example", 'the example overlay has a .env.example');
is(`git -C '$repo' ls-files deploy/k8s/overlays/example/.env 2>/dev/null`, '',
   'no .env is committed');
copy("$ex/.env.example", "$ex/.env") or die "copy .env: $!";

sub render {
    my ($dir) = @_;
    my $out = `kubectl kustomize '$dir' 2>'$tmp/kustomize.err'`;
    my $rc = $?;
    my $err = do { local (@ARGV, $/) = "$tmp/kustomize.err"; <> } // '';
    return ($rc, $out, $err);
}

my %set;
for my $name (qw(base overlay)) {
    my $dir = $name eq 'base' ? "$copy/base" : $ex;
    my ($rc, $out, $err) = render($dir);
    is($rc, 0, "$name: kubectl kustomize renders it") or diag $err;
    is($err, '', "$name: without a warning (no deprecated field)");
    my @docs = grep { defined } eval { YAML::XS::Load($out) };
    ok(!$@ && @docs, "$name: the output parses as YAML") or diag $@;
    $set{$name} = \@docs;
}

# kustomize without the ServiceMonitor component: a cluster without the
# Prometheus Operator applies the overlay with that line removed
{
    (my $k = do { local (@ARGV, $/) = "$ex/kustomization.yaml"; <> })
        =~ s{^components:\n(?:\s+- .*\n)+}{}m;
    open my $fh, '>', "$ex/kustomization.yaml" or die $!;
    print $fh $k;
    close $fh;
    my ($rc, $out, $err) = render($ex);
    is($rc, 0, 'overlay: renders without the ServiceMonitor component')
        or diag $err;
    unlike($out, qr/^kind: ServiceMonitor$/m, 'which is then gone');
    copy("$k8s/overlays/example/kustomization.yaml", "$ex/kustomization.yaml");
}

# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

sub docs_of {
    my ($set, $kind) = @_;
    return grep { ($_->{kind} // '') eq $kind } @{ $set{$set} };
}

sub one {
    my ($set, $kind) = @_;
    my @d = docs_of($set, $kind);
    return @d == 1 ? $d[0] : undef;
}

sub by_name {
    my ($set, $kind, $name) = @_;
    my @d = grep { $_->{metadata}{name} eq $name } docs_of($set, $kind);
    return $d[0];
}

# does the selector (matchLabels, or a plain map) select these labels?
sub selects {
    my ($sel, $labels) = @_;
    my $m = exists $sel->{matchLabels} ? $sel->{matchLabels} : $sel;
    return 0 unless $m && %$m;
    return 0 if $sel->{matchExpressions};
    for (keys %$m) {
        return 0 unless defined $labels->{$_} && $labels->{$_} eq $m->{$_};
    }
    return 1;
}

my %contract_env = (
    DASHSCOPE_API_KEY      => undef,
    QWEN_REGION            => 'singapore',
    QWEN_UPSTREAM          => 'https://dashscope-intl.aliyuncs.com',
    QWEN_WORKER_PROCESSES  => 'auto',
    QWEN_METRICS_ZONE_SIZE => '4m',
    QWEN_CLIENT_KEYS       => 'off',
    QWEN_LOG_LEVEL         => 'warn',
);

my %api = (
    Namespace               => ['v1'],
    ServiceAccount          => ['v1'],
    ConfigMap               => ['v1'],
    Secret                  => ['v1'],
    Service                 => ['v1'],
    Deployment              => ['apps/v1'],
    HorizontalPodAutoscaler => ['autoscaling/v2'],
    PodDisruptionBudget     => ['policy/v1'],
    ServiceMonitor          => ['monitoring.coreos.com/v1'],
    Gateway                 => ['gateway.networking.k8s.io/v1'],
    HTTPRoute               => ['gateway.networking.k8s.io/v1'],
    Ingress                 => ['networking.k8s.io/v1'],
    NetworkPolicy           => ['networking.k8s.io/v1'],
);

my %expected = (
    base    => [qw(ServiceAccount ConfigMap Deployment Service
                   HorizontalPodAutoscaler PodDisruptionBudget)],
    overlay => [qw(Namespace ServiceAccount ConfigMap Secret Deployment
                   Service HorizontalPodAutoscaler PodDisruptionBudget
                   ServiceMonitor Gateway HTTPRoute)],
);

# Secrets the base leaves to the user (deploy/k8s/base/kustomization.yaml)
my %external_secrets = map { $_ => 1 }
    qw(qwen-gateway-provider qwen-gateway-client-keys);

# --------------------------------------------------------------------------
# the checks, for the base and the overlay
# --------------------------------------------------------------------------

my %deployment;
for my $s (qw(base overlay)) {
    my @docs = @{ $set{$s} };
    my %kinds = map { ($_->{kind} // '?') => 1 } @docs;

    for my $k (@{ $expected{$s} }) {
        ok($kinds{$k}, "$s: has a $k");
    }
    for my $d (@docs) {
        my $k = $d->{kind} // '?';
        my $n = $d->{metadata}{name} // '?';
        ok($api{$k} && grep({ $_ eq ($d->{apiVersion} // '') } @{ $api{$k} }),
           "$s: $k $n is $d->{apiVersion}, a current apiVersion")
            or diag 'expected ' . join(' or ', @{ $api{$k} || ['(a known kind)'] });
    }
    ok(!$kinds{ServiceMonitor}, "$s: no ServiceMonitor: applies without "
       . 'the Prometheus Operator') if $s eq 'base';
    if ($s eq 'overlay') {
        my @wrong = map { "$_->{kind} $_->{metadata}{name}" }
            grep { $_->{kind} ne 'Namespace'
                   && ($_->{metadata}{namespace} // '') ne 'qwen-gateway' }
            @docs;
        is("@wrong", '', 'overlay: every object is in the namespace qwen-gateway');
        ok(by_name('overlay', 'Namespace', 'qwen-gateway'),
           'overlay: which it creates');
    }

    my $dep = one($s, 'Deployment');
    ok($dep, "$s: one Deployment") or next;
    $deployment{$s} = $dep;
    my $spec = $dep->{spec};
    my $pod = $spec->{template}{spec};
    my $labels = $spec->{template}{metadata}{labels} || {};
    my $ann = $spec->{template}{metadata}{annotations} || {};
    my @c = @{ $pod->{containers} || [] };
    is(scalar @c, 1, "$s: the pod has one container");
    my $c = $c[0] || {};

    ok(selects($spec->{selector}, $labels),
       "$s: the Deployment's selector selects its pod template");
    ok(!exists $spec->{replicas},
       "$s: no spec.replicas: the HPA owns the count");

    # image
    if ($s eq 'base') {
        like($c->{image} // '', qr{^qwen-gateway:[\w.-]+$},
             'base: image qwen-gateway, tagged by the images: entry');
    } else {
        like($c->{image} // '', qr{/qwen-gateway:[\w.-]+$},
             'overlay: image from the images: entry (registry/qwen-gateway:tag)');
    }

    # ports
    my %port = map { ($_->{name} // '') => $_->{containerPort} }
        @{ $c->{ports} || [] };
    is($port{http}, 8000, "$s: container port http is 8000");
    is($port{metrics}, 9145, "$s: container port metrics is 9145");
    my $portnum = sub { my $p = shift; $p =~ /^\d+$/ ? $p : $port{$p} };

    # probes
    for ([startupProbe => '/healthz'], [livenessProbe => '/healthz'],
         [readinessProbe => '/readyz']) {
        my ($probe, $path) = @$_;
        my $g = $c->{$probe} && $c->{$probe}{httpGet};
        ok($g && ($g->{path} // '') eq $path
              && ($portnum->($g->{port} // '') // 0) == 8000,
           "$s: $probe is GET $path on port 8000");
    }

    # security
    my $psc = $pod->{securityContext} || {};
    ok($psc->{runAsNonRoot}, "$s: pod runAsNonRoot");
    is($psc->{runAsUser}, 101, "$s: pod runAsUser 101");
    is($psc->{runAsGroup}, 101, "$s: pod runAsGroup 101");
    is($psc->{fsGroup}, 101, "$s: pod fsGroup 101");
    is(($psc->{seccompProfile} || {})->{type}, 'RuntimeDefault',
       "$s: pod seccompProfile RuntimeDefault");
    my $csc = $c->{securityContext} || {};
    ok($csc->{readOnlyRootFilesystem}, "$s: readOnlyRootFilesystem");
    ok(exists $csc->{allowPrivilegeEscalation}
           && !$csc->{allowPrivilegeEscalation},
       "$s: allowPrivilegeEscalation false");
    ok(grep({ $_ eq 'ALL' } @{ ($csc->{capabilities} || {})->{drop} || [] }),
       "$s: capabilities drop ALL");
    ok(!@{ ($csc->{capabilities} || {})->{add} || [] }, "$s: none added");
    ok(!$csc->{privileged}, "$s: not privileged");
    ok(!defined $csc->{runAsUser} || $csc->{runAsUser} == 101,
       "$s: the container does not run as another user");
    ok(!$pod->{hostNetwork} && !$pod->{hostPID} && !$pod->{hostIPC},
       "$s: no host namespaces");
    ok(exists $pod->{automountServiceAccountToken}
           && !$pod->{automountServiceAccountToken},
       "$s: no service account token mounted");
    ok(exists $pod->{enableServiceLinks} && !$pod->{enableServiceLinks},
       "$s: no service links in the environment");
    ok(!$pod->{shareProcessNamespace},
       "$s: no shared process namespace (the preStop hook signals PID 1)");

    # resources
    my $r = $c->{resources} || {};
    ok($r->{requests}{cpu} && $r->{requests}{memory},
       "$s: cpu and memory requests");
    ok($r->{limits}{memory}, "$s: a memory limit");

    # volumes and mounts
    my %vol = map { $_->{name} => $_ } @{ $pod->{volumes} || [] };
    my @mounts = @{ $c->{volumeMounts} || [] };
    my @dangling = grep { !$vol{$_->{name}} } @mounts;
    is(join(' ', map { $_->{name} } @dangling), '',
       "$s: every volume mounted is defined");
    my %mounted = map { $_->{name} => 1 } @mounts;
    is(join(' ', grep { !$mounted{$_} } sort keys %vol), '',
       "$s: every volume defined is mounted");
    is(join(' ', map { $_->{mountPath} } grep { $_->{subPath} || $_->{subPathExpr} } @mounts),
       '', "$s: no subPath mount (those never see a ConfigMap change)");
    my ($tmpm) = grep { $_->{mountPath} eq '/tmp' } @mounts;
    my $tmpv = $tmpm && $vol{$tmpm->{name}};
    ok($tmpv && $tmpv->{emptyDir}, "$s: /tmp is an emptyDir");
    ok($tmpv && $tmpv->{emptyDir} && $tmpv->{emptyDir}{sizeLimit},
       "$s: with a sizeLimit");
    ok(!grep({ $_->{mountPath} ne '/tmp' && !$_->{readOnly} } @mounts),
       "$s: every other mount is read-only");

    # the files the mounts give, and the ConfigMaps and Secrets behind them
    my (%files, @refs);
    my $data_keys = sub {
        my ($kind, $name) = @_;
        my $d = by_name($s, $kind, $name) or return;
        return (keys %{ $d->{data} || {} }, keys %{ $d->{stringData} || {} });
    };
    my $add_source = sub {
        my ($at, $kind, $src) = @_;
        push @refs, [$kind, $src->{name}, $src->{optional}];
        my @items = @{ $src->{items} || [] };
        if (@items) {
            for (@items) {
                $files{"$at/$_->{path}"} = [$kind, $src->{name}, $_->{key}];
            }
        } else {
            $files{"$at/$_"} = [$kind, $src->{name}, $_]
                for $data_keys->($kind, $src->{name});
        }
    };
    for my $m (@mounts) {
        my $v = $vol{$m->{name}} or next;
        my $at = $m->{mountPath};
        if ($v->{configMap}) {
            $add_source->($at, 'ConfigMap', $v->{configMap});
        } elsif ($v->{secret}) {
            $add_source->($at, 'Secret',
                          { %{ $v->{secret} }, name => $v->{secret}{secretName} });
        } elsif ($v->{projected}) {
            for my $src (@{ $v->{projected}{sources} || [] }) {
                $add_source->($at, 'ConfigMap', $src->{configMap}) if $src->{configMap};
                $add_source->($at, 'Secret', $src->{secret}) if $src->{secret};
            }
        }
    }
    for my $e (@{ $c->{envFrom} || [] }) {
        push @refs, ['ConfigMap', $e->{configMapRef}{name}, $e->{configMapRef}{optional}]
            if $e->{configMapRef};
        push @refs, ['Secret', $e->{secretRef}{name}, $e->{secretRef}{optional}]
            if $e->{secretRef};
    }
    for my $e (@{ $c->{env} || [] }) {
        my $vf = $e->{valueFrom} or next;
        push @refs, ['ConfigMap', $vf->{configMapKeyRef}{name}] if $vf->{configMapKeyRef};
        push @refs, ['Secret', $vf->{secretKeyRef}{name}] if $vf->{secretKeyRef};
    }
    my @missing = map { "$_->[0] $_->[1]" } grep {
        !by_name($s, $_->[0], $_->[1])
            && !($s eq 'base' && $_->[0] eq 'Secret'
                 && $external_secrets{$_->[1]})
    } @refs;
    is("@missing", '', $s eq 'base'
       ? 'base: every ConfigMap it uses is in it (Secrets: the two documented ones)'
       : 'overlay: every ConfigMap and Secret it uses is in it');
    if ($s eq 'overlay') {
        my @ext = map { "$_->[1]" } grep { $_->[0] eq 'Secret'
            && $external_secrets{$_->[1]} } @refs;
        is("@ext", '', 'overlay: the Secrets are its own, renamed with '
           . 'their content hash');
    }

    for (['/etc/nginx/templates/nginx.conf.template', 'ConfigMap'],
         ['/etc/qwen/qwen-models.json', 'ConfigMap'],
         ['/etc/qwen/keys/keys.json', 'Secret']) {
        my ($path, $kind) = @$_;
        my $f = $files{$path};
        ok($f && $f->[0] eq $kind, "$s: $path comes from a $kind")
            or diag explain \%files;
        next unless $f && ($s eq 'overlay' || $kind eq 'ConfigMap');
        ok(grep({ $_ eq $f->[2] } $data_keys->($kind, $f->[1])),
           "$s: whose key $f->[2] exists in $f->[1]");
    }

    # environment: the image's variables only; the key only from a Secret
    my %env = map { $_->{name} => $_ } @{ $c->{env} || [] };
    my @unknown = grep { !exists $contract_env{$_} } sort keys %env;
    is("@unknown", '', "$s: every variable set is one of the image's");
    ok(!exists $env{DASHSCOPE_API_KEY} || ($env{DASHSCOPE_API_KEY}{valueFrom}
                                            && !exists $env{DASHSCOPE_API_KEY}{value}),
       "$s: DASHSCOPE_API_KEY is not written in the manifest");
    my ($provider) = grep { $_->{secretRef} } @{ $c->{envFrom} || [] };
    ok($provider || ($env{DASHSCOPE_API_KEY} && $env{DASHSCOPE_API_KEY}{valueFrom}),
       "$s: DASHSCOPE_API_KEY comes from a Secret");
    like(($env{QWEN_CLIENT_KEYS} || {})->{value} // 'off', qr/^(?:on|off)$/,
         "$s: QWEN_CLIENT_KEYS is on or off");
    like(($env{QWEN_UPSTREAM} || {})->{value} // 'https://x',
         qr{^https?://[\w.-]+(?::\d+)?$}, "$s: QWEN_UPSTREAM is scheme://host[:port]");
    is(($env{QWEN_WORKER_PROCESSES} || {})->{value} // 'auto',
       $r->{limits}{cpu} // 'auto',
       "$s: QWEN_WORKER_PROCESSES matches the CPU limit");

    # Prometheus annotations
    is($ann->{'prometheus.io/scrape'}, 'true', "$s: prometheus.io/scrape");
    is($ann->{'prometheus.io/port'}, $port{metrics},
       "$s: prometheus.io/port is the metrics port");
    is($ann->{'prometheus.io/path'}, '/metrics', "$s: prometheus.io/path");

    # the graceful stop
    my $pre = $c->{lifecycle} && $c->{lifecycle}{preStop};
    ok($pre, "$s: a preStop hook");
    my $cmd = join ' ', @{ ($pre && $pre->{exec} && $pre->{exec}{command}) || [] };
    my ($sleep) = $cmd =~ /\bsleep\s+(\d+)/;
    $sleep //= $pre->{sleep}{seconds} if $pre && $pre->{sleep};
    ok($sleep && $sleep >= 5, "$s: which waits for the endpoints to update first")
        or diag $cmd;
    my $tg = $pod->{terminationGracePeriodSeconds} // 30;
    cmp_ok($tg, '>', ($sleep // 0) + 60,
           "$s: terminationGracePeriodSeconds leaves streams time after the preStop sleep");
    like($cmd, qr/kill -QUIT 1\b/, "$s: the hook stops nginx gracefully (SIGQUIT)");
    my $st = $spec->{strategy}{rollingUpdate} || {};
    is($st->{maxUnavailable} // '', 0, "$s: a rollout never goes below the count");

    # Service
    my $svc = by_name($s, 'Service', $dep->{metadata}{name});
    ok($svc && selects($svc->{spec}{selector}, $labels),
       "$s: the Service selects the Deployment's pods");
    my %sp = map { $_->{name} => $_ } @{ ($svc && $svc->{spec}{ports}) || [] };
    for (['http', 8000], ['metrics', 9145]) {
        my ($n, $num) = @$_;
        ok($sp{$n} && $sp{$n}{port} == $num
              && ($portnum->($sp{$n}{targetPort} // $sp{$n}{port}) // 0) == $num,
           "$s: Service port $n $num reaches container port $num");
    }

    # HPA
    my $hpa = one($s, 'HorizontalPodAutoscaler') || {};
    my $ref = $hpa->{spec}{scaleTargetRef} || {};
    ok(($ref->{kind} // '') eq 'Deployment' && ($ref->{apiVersion} // '') eq 'apps/v1'
           && ($ref->{name} // '') eq $dep->{metadata}{name},
       "$s: the HPA scales the Deployment");
    cmp_ok($hpa->{spec}{minReplicas} // 1, '>=', 2, "$s: the HPA keeps 2 pods at least");
    cmp_ok($hpa->{spec}{maxReplicas} // 0, '>=', $hpa->{spec}{minReplicas} // 1,
           "$s: maxReplicas >= minReplicas");
    ok(grep({ ($_->{resource}{name} // '') eq 'cpu' } @{ $hpa->{spec}{metrics} || [] }),
       "$s: on CPU");

    # PDB
    my $pdb = one($s, 'PodDisruptionBudget') || {};
    ok(selects($pdb->{spec}{selector} || {}, $labels),
       "$s: the PodDisruptionBudget covers the Deployment's pods");
    ok((defined $pdb->{spec}{minAvailable} xor defined $pdb->{spec}{maxUnavailable}),
       "$s: with minAvailable or maxUnavailable");
    ok(!defined $pdb->{spec}{minAvailable}
           || $pdb->{spec}{minAvailable} =~ /%$/
           || $pdb->{spec}{minAvailable} < ($hpa->{spec}{minReplicas} // 1),
       "$s: which lets a node drain go on");

    # the ServiceAccount
    my $sa = $pod->{serviceAccountName};
    ok($sa && by_name($s, 'ServiceAccount', $sa), "$s: its ServiceAccount is in it");
}

# --------------------------------------------------------------------------
# the overlay's own objects
# --------------------------------------------------------------------------

{
    my $svc = by_name('overlay', 'Service', 'qwen-gateway') || {};
    my %sp = map { $_->{name} => $_->{port} } @{ $svc->{spec}{ports} || [] };

    my $sm = one('overlay', 'ServiceMonitor') || {};
    ok(selects($sm->{spec}{selector} || {}, $svc->{metadata}{labels} || {}),
       'overlay: the ServiceMonitor selects the Service');
    my ($ep) = @{ $sm->{spec}{endpoints} || [] };
    ok($ep && ($ep->{port} // '') eq 'metrics' && $sp{metrics},
       'overlay: it scrapes the Service port named metrics');
    is($ep && $ep->{path}, '/metrics', 'overlay: at /metrics');

    my $route = one('overlay', 'HTTPRoute') || {};
    my $gw = one('overlay', 'Gateway') || {};
    my @parents = @{ $route->{spec}{parentRefs} || [] };
    ok(@parents && !grep({ !by_name('overlay', 'Gateway', $_->{name}) } @parents),
       'overlay: the HTTPRoute attaches to the Gateway it ships');
    my %listener = map { $_->{name} => $_ } @{ $gw->{spec}{listeners} || [] };
    ok(!grep({ $_->{sectionName} && !$listener{$_->{sectionName}} } @parents),
       'overlay: to a listener the Gateway has');
    my @backends = map { @{ $_->{backendRefs} || [] } } @{ $route->{spec}{rules} || [] };
    ok(@backends && !grep({ ($_->{name} // '') ne 'qwen-gateway'
                             || ($_->{port} // 0) != 8000 } @backends),
       'overlay: the route sends only to the Service port 8000 (metrics stay inside)');
    my @short = grep {
        my $t = ($_->{timeouts} || {})->{request};
        !defined $t || !($t =~ /^0+[a-z]*$/ || ($t =~ /^(\d+)s$/ && $1 >= 600)
                         || ($t =~ /^(\d+)m$/ && $1 >= 10)
                         || $t =~ /^\d+h$/)
    } @{ $route->{spec}{rules} || [] };
    is(scalar @short, 0, 'overlay: the route\'s request timeout is off or '
       . '10 minutes at least (Envoy Gateway\'s default of 15 s cuts streams)');

    my $ns = by_name('overlay', 'Namespace', 'qwen-gateway') || {};
    is(($ns->{metadata}{labels} || {})->{'pod-security.kubernetes.io/enforce'},
       'restricted', 'overlay: the namespace enforces the restricted Pod Security Standard');

    # the Secrets' content
    my $dep = $deployment{overlay} || {};
    my $c = ($dep->{spec}{template}{spec}{containers} || [{}])->[0];
    my ($from) = map { $_->{secretRef}{name} } grep { $_->{secretRef} }
        @{ $c->{envFrom} || [] };
    my $sec = $from && by_name('overlay', 'Secret', $from);
    ok($sec && exists $sec->{data}{DASHSCOPE_API_KEY},
       'overlay: the provider Secret holds DASHSCOPE_API_KEY');
    is($sec && decode_base64($sec->{data}{DASHSCOPE_API_KEY} // ''), 'replace-me',
       'overlay: from .env.example, a placeholder');
    my ($keys) = grep { $_->{data} && $_->{data}{'keys.json'} }
        docs_of('overlay', 'Secret');
    my $kj = $keys && eval { JSON::PP->new->decode(decode_base64($keys->{data}{'keys.json'})) };
    ok($kj && ref $kj->{keys} eq 'ARRAY' && @{ $kj->{keys} },
       'overlay: the client keys Secret holds a keys.json with keys');
    my @real = grep { $_->{key} !~ /^sha256:/ && $_->{key} !~ /example.*replace-me/ }
        @{ ($kj && $kj->{keys}) || [] };
    is(join(' ', map { $_->{id} } @real), '',
       'overlay: its keys in clear are obvious placeholders');
}

# --------------------------------------------------------------------------
# no secret committed
# --------------------------------------------------------------------------

{
    my @files = grep { -f "$repo/$_" } split /\0/,
        `git -C '$repo' ls-files -z -- deploy 2>/dev/null`;
    # not yet committed: every file there
    if (!@files) {
        File::Find::find({ no_chdir => 1, wanted => sub {
            push @files, substr($_, length($repo) + 1) if -f $_;
        } }, $k8s);
    }
    my @found;
    for my $f (@files) {
        next if $f =~ m{(?:^|/)\.env$};    # the user's, never committed
        open my $fh, '<', "$repo/$f" or next;
        while (my $line = <$fh>) {
            # an API key shape (sk-, 20 characters and more) that says
            # nothing of being an example
            while ($line =~ /\b(sk-[A-Za-z0-9_-]{16,})/g) {
                push @found, "$f:$.: $1" unless $1 =~ /example|replace|placeholder/i;
            }
            push @found, "$f:$.: a value for DASHSCOPE_API_KEY"
                if $line =~ /^\s*DASHSCOPE_API_KEY\s*=\s*(\S+)/ && $1 ne 'replace-me';
            push @found, "$f:$.: a private key" if $line =~ /-----BEGIN [A-Z ]*PRIVATE KEY/;
        }
    }
    is(join("\n", @found), '', 'no real-looking key in deploy/');
}

# --------------------------------------------------------------------------
# the copies of files the image has
# --------------------------------------------------------------------------

sub slurp { my $f = shift; open my $fh, '<', $f or return; local $/; <$fh> }

my $template = slurp("$k8s/base/nginx.conf.template");
my $cm = by_name('base', 'ConfigMap',
                 (grep { /^qwen-gateway-templates-/ }
                  map { $_->{metadata}{name} } docs_of('base', 'ConfigMap'))[0] // '');
is($cm && $cm->{data}{'nginx.conf.template'}, $template,
   'the templates ConfigMap holds base/nginx.conf.template');
SKIP: {
    my $image = slurp("$repo/docker/templates/nginx.conf.template");
    skip 'no docker/templates/nginx.conf.template in this checkout', 1
        unless defined $image;
    ok($template eq $image,
       'base/nginx.conf.template is the same as docker/templates/nginx.conf.template')
        or diag 'cp docker/templates/nginx.conf.template deploy/k8s/base/';
}
ok(slurp("$k8s/base/qwen-models.json") eq slurp("$repo/conf-examples/qwen-models.json"),
   'base/qwen-models.json is the same as conf-examples/qwen-models.json (the image\'s)')
    or diag 'cp conf-examples/qwen-models.json deploy/k8s/base/';

# --------------------------------------------------------------------------
# the template under the real nginx, as the pod would run it
# --------------------------------------------------------------------------

# The entry point's rendering. With docker/entrypoint.sh (the image's
# qwen-entrypoint) in the checkout, that very script renders the template,
# its fixed paths (/tmp/nginx, /etc/qwen, /etc/nginx/templates) moved into
# this test's directory, in the pod's environment and nothing else.
# Without it, envsubst of the variables that are set, as the contract says.
sub envsubst {
    my ($text, $env) = @_;
    $text =~ s/\$\{(\w+)\}/exists $env->{$1} ? $env->{$1} : "\${$1}"/ge;
    $text =~ s/\$(\w+)/exists $env->{$1} ? $env->{$1} : "\$$1"/ge;
    return $text;
}

my $so = $ENV{TEST_NGINX_LOAD_MODULES} || "$repo/build/ngx_http_qwen_module.so";
my $nginx = $ENV{QWEN_SECRET_REAL_NGINX} || '/usr/sbin/nginx';

# a path the container has, not one already moved into $run
my $outside = qr{(?<![\w/])};

sub render_template {
    my ($s, $run, $tpl, $env) = @_;
    my $entry = "$repo/docker/entrypoint.sh";
    my $script = slurp($entry);
    if (!defined $script) {
        note "$s: no docker/entrypoint.sh: the template is rendered by this test";
        return envsubst($tpl, { %contract_env, %$env });
    }
    $script =~ s{$outside/tmp/nginx\b}{$run/tmp/nginx}g;
    $script =~ s{$outside/etc/nginx/templates\b}{$run/templates}g;
    $script =~ s{$outside/etc/qwen\b}{$run/etc/qwen}g;
    make_path("$run/templates");
    for my $f ([ "$run/entrypoint.sh", $script ],
               [ "$run/templates/nginx.conf.template", $tpl ]) {
        open my $fh, '>', $f->[0] or die "$f->[0]: $!";
        print $fh $f->[1];
        close $fh;
    }
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>', "$run/logs/entrypoint.log" or die $!;
        open STDERR, '>&', \*STDOUT;
        %ENV = (PATH => '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
                HOME => $run, %$env);
        exec 'sh', "$run/entrypoint.sh", 'true';
        die "exec: $!";
    }
    waitpid $pid, 0;
    my $rc = $?;
    ok($rc == 0, "$s: the image's entry point renders the ConfigMap's template "
       . 'in the pod\'s environment') or diag slurp("$run/logs/entrypoint.log");
    return slurp("$run/tmp/nginx/nginx.conf") // '';
}

my @started;
END { kill 'KILL', $_ for grep { kill 0, $_ } @started }

sub run_template {
    my ($s) = @_;
    my $dep = $deployment{$s} or return;
    my $c = $dep->{spec}{template}{spec}{containers}[0];
    my $mock = $ENV{TEST_NGINX_MOCK_PORT};

    # the pod's environment: the Deployment's variables, and the key as
    # the Secret would give it
    my %env;
    $env{$_->{name}} = $_->{value} for grep { exists $_->{value} } @{ $c->{env} || [] };
    # the test's stand-ins: the mock DashScope (scripts/run-tests.sh starts
    # one that takes this key), or a port nothing listens on; one worker
    $env{QWEN_UPSTREAM} = 'http://127.0.0.1:' . ($mock || free_port());
    $env{DASHSCOPE_API_KEY} = 'sk-mock';
    $env{QWEN_WORKER_PROCESSES} = 1;

    my $run = "$tmp/run-$s";
    make_path("$run/tmp", "$run/etc/qwen/keys", "$run/logs");
    chmod 0755, $tmp, $run, "$run/tmp";
    # the mounted files, as the overlay's (or the base's) objects give them
    my %data = map { %{ $_->{data} || {} } } docs_of($s, 'ConfigMap');
    my $put = sub {
        my ($f, $content) = @_;
        open my $fh, '>', $f or die "$f: $!";
        print $fh $content;
        close $fh;
    };
    $put->("$run/etc/qwen/qwen-models.json", $data{'qwen-models.json'} // '');
    if ($s eq 'overlay') {
        my ($keys) = grep { $_->{data} && $_->{data}{'keys.json'} } docs_of($s, 'Secret');
        $put->("$run/etc/qwen/keys/keys.json", decode_base64($keys->{data}{'keys.json'}))
            if $keys;
    }

    my $conf = render_template($s, $run, $data{'nginx.conf.template'} // '', \%env);
    # (in the directives, not in the comments)
    my @left = map { /\$\{?([A-Z][A-Z0-9_]*)\b/g } grep { !/^\s*#/ } split /\n/, $conf;
    is("@left", '', "$s: every variable of the template is set (Deployment or image default)");
    unlike($conf, qr/sk-mock/, "$s: the key is not written into the rendered file");
    mkdir "$run/tmp/nginx";

    # outside a container: the paths into this directory, free ports
    my ($p_http, $p_metrics) = (free_port(), undef);
    $p_metrics = free_port($p_http);
    my $had_load = $conf =~ s{^(\s*load_module\s+)\S*ngx_http_qwen_module\.so\s*;}{$1$so;}m;
    $conf = "load_module $so;\n$conf" unless $had_load;
    $conf =~ s{$outside/tmp/nginx\b}{$run/tmp/nginx}g;
    $conf =~ s{$outside/etc/qwen\b}{$run/etc/qwen}g;
    $conf =~ s{^\s*user\s+[^;]*;}{}mg;
    $conf =~ s{^\s*listen\s+\[::\][^;]*;}{}mg;
    my $n8000 = $conf =~ s{\blisten\s+(?:[\w.*]+:)?8000\b}{listen 127.0.0.1:$p_http}g;
    my $n9145 = $conf =~ s{\blisten\s+(?:[\w.*]+:)?9145\b}{listen 127.0.0.1:$p_metrics}g;
    ok($n8000 && $n9145, "$s: the template listens on 8000 and 9145");
    my $conffile = "$run/tmp/nginx/nginx.conf";
    open my $fh, '>', $conffile or die $!;
    print $fh $conf;
    close $fh;

    local @ENV{keys %env} = values %env;
    my $t = `'$nginx' -t -p '$run/' -e stderr -c '$conffile' 2>&1`;
    is($?, 0, "$s: nginx -t accepts the rendered template"
       . ($s eq 'overlay' ? ' with the overlay\'s keys.json' : '')) or do {
        diag $t;
        return;
    };

    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>', "$run/logs/nginx.log" or die $!;
        open STDERR, '>&', \*STDOUT;
        exec $nginx, '-p', "$run/", '-e', 'stderr', '-c', $conffile,
             '-g', 'daemon off;';
        die "exec: $!";
    }
    push @started, $pid;
    my $http = HTTP::Tiny->new(timeout => 5);
    my $res;
    my $deadline = time + 10;
    while (time < $deadline) {
        $res = $http->get("http://127.0.0.1:$p_http/healthz");
        last if $res->{status} == 200 || waitpid($pid, WNOHANG) == $pid;
        sleep 0.1;
    }
    is($res->{status}, 200, "$s: GET /healthz on the http port: 200 (liveness, startup)")
        or do { diag slurp("$run/logs/nginx.log"); kill 'KILL', $pid; waitpid $pid, 0; return };

    $res = $http->get("http://127.0.0.1:$p_http/readyz");
    is($res->{status}, 200, "$s: GET /readyz on the http port: 200 (readiness)")
        or diag $res->{content};
    like($res->{content}, qr/"status"\s*:\s*"ready"/, "$s: from qwen_ready");
    $res = $http->get("http://127.0.0.1:$p_metrics/metrics");
    is($res->{status}, 200, "$s: GET /metrics on the metrics port: 200 (Prometheus)");
    like($res->{content}, qr/^# (?:HELP|TYPE) qwen_/m, "$s: Prometheus text");
    $res = $http->get("http://127.0.0.1:$p_metrics/status");
    ok($res->{status} == 200 && eval { JSON::PP->new->decode($res->{content}); 1 },
       "$s: GET /status on the metrics port: JSON");
    $res = $http->get("http://127.0.0.1:$p_metrics/healthz");
    is($res->{status}, 200, "$s: GET /healthz on the metrics port: 200");

    SKIP: {
        skip 'no mock DashScope (run through scripts/run-tests.sh)', 2 unless $mock;
        my %h = ('content-type' => 'application/json');
        $h{authorization} = 'Bearer sk-client-example-replace-me' if $s eq 'overlay';
        $res = $http->post("http://127.0.0.1:$p_http/v1/chat/completions", {
            headers => \%h,
            content => '{"model":"qwen-plus","messages":[{"role":"user","content":"hi"}]}',
        });
        is($res->{status}, 200, "$s: a chat completion through the gateway: 200"
           . ($s eq 'overlay' ? ' with the example client key' : ''))
            or diag substr($res->{content} // '', 0, 300);
        if ($s eq 'overlay') {
            $res = $http->post("http://127.0.0.1:$p_http/v1/chat/completions", {
                headers => { 'content-type' => 'application/json' },
                content => '{"model":"qwen-plus","messages":[]}',
            });
            is($res->{status}, 401, 'overlay: without a client key: 401 (QWEN_CLIENT_KEYS=on)');
        } else {
            pass('base: (client keys off)');
        }
    }

    # the graceful stop the preStop hook asks for
    kill 'QUIT', $pid;
    my $stopped = wait_gone($pid, 10);
    ok($stopped && $? == 0, "$s: SIGQUIT stops nginx cleanly")
        or do { kill 'KILL', $pid; waitpid $pid, 0 };

    prestop_drain($s, $run, $conffile, $p_http, $c) if $s eq 'base';

    my $log = slurp("$run/logs/nginx.log") // '';
    unlike($log, qr/\[(?:emerg|alert|crit)\]/, "$s: nothing failed in nginx's log")
        or diag $log;

    # for the secret scan (t/lib/Qwen/SecretScan.pm), when it runs
    Qwen::SecretScan::collect_logs("$run/logs", "nginx of t/162-k8s.t ($s)")
        if defined &Qwen::SecretScan::collect_logs;
}

sub wait_gone {
    my ($pid, $secs) = @_;
    my $deadline = time + $secs;
    while (time < $deadline) {
        return 1 if waitpid($pid, WNOHANG) == $pid;
        sleep 0.05;
    }
    return 0;
}

sub children_of {
    my ($ppid) = @_;
    my @c;
    for my $stat (glob '/proc/[0-9]*/stat') {
        open my $fh, '<', $stat or next;
        my $line = <$fh> // next;
        push @c, $1 if $line =~ /^(\d+) \(.*\) \S+ (\d+) / && $2 == $ppid;
    }
    return @c;
}

# The preStop hook, run as the kubelet runs it: nginx is PID 1 of its own
# PID namespace (as the entry point's exec makes it in the pod), the hook's
# command runs in that namespace (kubectl exec's way, nsenter here) while
# a stream is in flight. Its sleep is shortened to 1 s for the test.
sub prestop_drain {
    my ($s, $run, $conffile, $port, $c) = @_;
    my @cmd = @{ ($c->{lifecycle}{preStop}{exec} || {})->{command} || [] };
    SKIP: {
        skip 'the preStop drain needs root (PID namespaces)', 6 if $> != 0;
        skip 'no unshare/nsenter (util-linux)', 6
            if system('sh', '-c', 'command -v unshare && command -v nsenter',
                      ) >> 8 != 0;
        skip 'no mock DashScope (run through scripts/run-tests.sh)', 6
            unless $ENV{TEST_NGINX_MOCK_PORT};
        skip 'no exec preStop hook', 6 unless @cmd;
        s/\bsleep\s+\d+;/sleep 1;/ for @cmd;

        my $ns = fork // die "fork: $!";
        if ($ns == 0) {
            open STDIN, '<', '/dev/null';
            open STDOUT, '>>', "$run/logs/nginx.log" or die $!;
            open STDERR, '>&', \*STDOUT;
            exec 'unshare', '--pid', '--fork', '--kill-child', '--',
                 $nginx, '-p', "$run/", '-e', 'stderr', '-c', $conffile,
                 '-g', 'daemon off;';
            die "exec: $!";
        }
        push @started, $ns;
        my $http = HTTP::Tiny->new(timeout => 5);
        my $deadline = time + 10;
        my $res = {};
        while (time < $deadline) {
            $res = $http->get("http://127.0.0.1:$port/healthz");
            last if $res->{status} == 200;
            sleep 0.1;
        }
        my ($pid1) = children_of($ns);
        ok($res->{status} == 200 && $pid1, "$s: nginx serves as PID 1 of its own PID namespace")
            or do { kill 'KILL', $ns; waitpid $ns, 0; skip 'nginx did not start', 5 };

        # a stream of 30 events, 100 ms apart
        my $body_file = "$run/logs/stream.out";
        my $streamer = fork // die "fork: $!";
        if ($streamer == 0) {
            my $r = HTTP::Tiny->new(timeout => 20)->post(
                "http://127.0.0.1:$port/v1/chat/completions", {
                headers => { 'content-type' => 'application/json',
                             'x-mock-chunks' => 30, 'x-mock-interval-ms' => 100 },
                content => '{"model":"qwen-plus","stream":true,'
                         . '"messages":[{"role":"user","content":"hi"}]}' });
            open my $fh, '>', $body_file or POSIX::_exit(1);
            print $fh "$r->{status}\n$r->{content}";
            close $fh;
            POSIX::_exit(0);
        }
        push @started, $streamer;
        sleep 0.5;

        my $hook = fork // die "fork: $!";
        if ($hook == 0) {
            open STDIN, '<', '/dev/null';
            exec('nsenter', '--target', $pid1, '--pid', '--', @cmd)
                or POSIX::_exit(127);
        }
        push @started, $hook;
        sleep 0.5;
        $res = $http->get("http://127.0.0.1:$port/healthz");
        is($res->{status}, 200, "$s: during the preStop sleep nginx still serves");
        sleep 1.0;
        $res = $http->get("http://127.0.0.1:$port/healthz");
        ok($res->{status} == 599, "$s: after it, nginx takes no new connection")
            or diag "status $res->{status}";
        ok(wait_gone($streamer, 10) && $? == 0, "$s: the stream in flight ended");
        my $got = slurp($body_file) // '';
        ok($got =~ /^200\n/ && $got =~ /\bw30\b/ && $got =~ /data: \[DONE\]/,
           "$s: whole: 30 events and [DONE], although nginx was stopping")
            or diag substr($got, 0, 300);
        ok(wait_gone($ns, 10) && wait_gone($hook, 5),
           "$s: then nginx exits, and the hook with it");
    }
}


SKIP: {
    skip "no module at $so (run make)", 1 unless -f $so;
    skip "no nginx at $nginx", 1 unless -x $nginx;
    run_template($_) for qw(base overlay);
}

done_testing();
