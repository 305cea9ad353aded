package Qwen::FreePort;

# free_port(): a TCP port on 127.0.0.1 that nothing listens on now, for a
# server a test starts itself (nginx, the gateway). It is picked at random,
# so that two test runs at once do not collide, and below the kernel's
# ephemeral range, where the local ports of outgoing connections come from:
# a port there could be taken by some connection between this check and the
# server's bind(). Ports given as arguments are avoided.
#
# Servers that can report the port they got (the mock DashScope with
# --port 0) should use that instead: it has no race at all.

use strict;
use warnings;
use IO::Socket::INET ();
use Exporter 'import';

our @EXPORT_OK = qw(free_port);

sub _range {
    my ($lo, $hi) = (32768, 60999);
    if (open my $fh, '<', '/proc/sys/net/ipv4/ip_local_port_range') {
        my $line = <$fh> // '';
        ($lo, $hi) = ($1, $2) if $line =~ /^\s*(\d+)\s+(\d+)/;
    }
    return (10000, $lo - 1) if $lo > 12000;
    return ($hi + 1, 65535) if $hi < 63000;
    return (1025, 65535);
}

sub free_port {
    my %avoid = map { $_ => 1 } @_;
    my ($min, $max) = _range();
    for (1 .. 500) {
        my $port = $min + int rand($max - $min + 1);
        next if $avoid{$port};
        # SO_REUSEADDR as nginx sets it: a port in TIME_WAIT is usable, one
        # with a listener is not
        my $sock = IO::Socket::INET->new(
            LocalAddr => '127.0.0.1',
            LocalPort => $port,
            Proto     => 'tcp',
            ReuseAddr => 1,
            Listen    => 1,
        ) or next;
        close $sock;
        return $port;
    }
    die "Qwen::FreePort: no free port in $min-$max after 500 tries\n";
}

1;
