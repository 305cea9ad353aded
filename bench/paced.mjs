// The paced scenario: a stream of 100 events, one per millisecond (the
// node mock's x-mock-interval-ms), through plain proxy_pass and through the
// module, alternately, several times. For each event, the time from the
// request to its arrival; the module's added latency is the difference
// between the two at the same event index. Prints p50/p99 of both and of
// the difference.
import http from 'node:http';
import fs from 'node:fs';

const [plain, module, bodyFile] = process.argv.slice(2);
const body = fs.readFileSync(bodyFile);
const ROUNDS = Number(process.env.BENCH_PACED_ROUNDS || 20);
const EVENTS = 100;

function stream(hostport) {
  const [host, port] = hostport.split(':');
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const times = [];
    let carry = '';
    const req = http.request({ host, port, method: 'POST', path: '/paced/',
      headers: { 'content-type': 'application/json',
                 'authorization': 'Bearer sk-mock',
                 'content-length': body.length,
                 'x-mock-interval-ms': '1', 'x-mock-chunks': String(EVENTS) },
      agent: false }, (res) => {
      res.setEncoding('utf8');
      res.on('data', (d) => {
        const now = Number(process.hrtime.bigint() - t0) / 1e6;
        carry += d;
        let i;
        while ((i = carry.indexOf('\n\n')) >= 0) {
          carry = carry.slice(i + 2);
          times.push(now);
        }
      });
      res.on('end', () => resolve(times));
    });
    req.on('error', reject);
    req.end(body);
  });
}

const pct = (a, p) => {
  const s = [...a].sort((x, y) => x - y);
  return s[Math.min(s.length - 1, Math.floor(p / 100 * s.length))];
};

const P = [], M = [], D = [];
for (let r = 0; r < ROUNDS; r++) {
  const p = await stream(plain);
  const m = await stream(module);
  const n = Math.min(p.length, m.length);
  for (let i = 0; i < n; i++) { P.push(p[i]); M.push(m[i]); D.push(m[i] - p[i]); }
}

const f = (x) => x.toFixed(2) + 'ms';
console.log(`paced stream         | ${ROUNDS} x ${EVENTS} events, 1/ms | event arrival p50 ${f(pct(P, 50))} / ${f(pct(M, 50))}` +
            ` | p99 ${f(pct(P, 99))} / ${f(pct(M, 99))} | added per event p50 ${f(pct(D, 50))}, p99 ${f(pct(D, 99))}`);
