#!/usr/bin/python3
# Parses Prometheus text exposition from stdin with the reference parser of
# the Python client (Debian: python3-prometheus-client) and prints one line
# per sample, "name{labels} value", sorted; exits 1 if it does not parse.
import sys
from prometheus_client.parser import text_string_to_metric_families

try:
    lines = []
    for family in text_string_to_metric_families(sys.stdin.read()):
        for s in family.samples:
            labels = ",".join('%s="%s"' % kv for kv in sorted(s.labels.items()))
            lines.append("%s{%s} %r" % (s.name, labels, float(s.value)))
except Exception as e:
    print("unparsable: %s" % e)
    sys.exit(1)

print("\n".join(sorted(lines)))
