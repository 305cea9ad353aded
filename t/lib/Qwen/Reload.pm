package Qwen::Reload;

# reload(): `nginx -s reload`, then wait until the reload has taken: the
# master has started the new workers and the old ones have exited. The
# signal is all `nginx -s reload` does; the master reads the configuration
# and swaps the workers in its own time, which on a loaded machine can be
# longer than any fixed sleep (a request in between is served by an old
# worker, with the old configuration and zone tables).
#
# What happened is read from the master's error log (notice level or lower:
# "start worker process N", "worker process N exited"); an old worker that
# is no longer running counts as gone even without its line (a test that
# killed processes by hand).
#
#   reload(log => "$dir/logs/error.log", nginx => [$nginx, '-p', ...],
#          workers => 2, timeout => 10)
#
# returns 1 when the reload took, 0 when it did not in `timeout` seconds.

use strict;
use warnings;
use Time::HiRes qw(sleep time);
use Exporter 'import';

our @EXPORT_OK = qw(reload);

sub _text {
    my ($file) = @_;
    open my $fh, '<', $file or return '';
    local $/;
    return <$fh> // '';
}

sub _running {
    my ($pid) = @_;
    open my $fh, '<', "/proc/$pid/stat" or return 0;
    my $stat = <$fh> // '';
    # a zombie waits for the master to reap it: it has exited
    return $stat !~ /^\d+ \(.*\) Z /;
}

sub _alive {
    my ($text, @pids) = @_;
    my %exited = map { $_ => 1 } $text =~ /worker process (\d+) exited/g;
    return grep { !$exited{$_} && _running($_) } @pids;
}

sub reload {
    my (%o) = @_;
    my $text = _text($o{log});
    my @started = $text =~ /start worker process (\d+)/g;
    my @old = _alive($text, @started);
    my $workers = $o{workers} // (@old || 1);

    system(@{ $o{nginx} }, '-s', 'reload') == 0 or return 0;

    my $deadline = time + ($o{timeout} // 10);
    while (time < $deadline) {
        $text = _text($o{log});
        my @now = $text =~ /start worker process (\d+)/g;
        return 1 if @now >= @started + $workers && !_alive($text, @old);
        sleep 0.05;
    }
    return 0;
}

1;
