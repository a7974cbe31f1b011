/**
 * README's main command, end to end: `node dist/scripts/demo.js` (what `npm run demo` runs after
 * the build) in a child process with its own hardhat chain and Node-RED, against the test
 * RabbitMQ (and on the in-process broker). Genuine CTI must be verified at the subscriber, the object
 * altered in transit rejected, the record altered in the store rejected by the inquirer, marked invalid and
 * refused by the server; the editor and TAXII discovery must answer;
 * then exit 0 (SETS_DEMO_EXIT_AFTER makes it stop by itself).
 */
import { strict as assert } from 'assert';
import { spawn } from 'child_process';
import * as fs from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';
import { rabbit } from '../support/services';

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

describe('npm run demo (end to end)', function () {
  this.timeout(240_000);

  async function runDemo(extraEnv: NodeJS.ProcessEnv): Promise<string> {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sets-demo-test-'));
    const port = await freePort();
    const env: NodeJS.ProcessEnv = { ...process.env, SETS_DEMO_DIR: dir, SETS_DEMO_PORT: String(port), SETS_DEMO_EXIT_AFTER: '120', ...extraEnv };
    // The demo must start its own chain (1 s blocks), not reuse the suite's.
    delete env.SETS_TEST_RPC_URL;
    delete env.SETS_TEST_WS_URL;
    const script = path.resolve(__dirname, '..', '..', 'scripts', 'demo.js');
    const child = spawn(process.execPath, [script], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    fs.rmSync(dir, { recursive: true, force: true });
    assert.equal(code, 0, `demo exited ${code}; output:\n${out.slice(-4000)}`);
    assert.match(out, /Node-RED editor:\s+http:\/\/127\.0\.0\.1:\d+\//);
    const summary = out.match(/summary: (\d+) verified, (\d+) rejected, (\d+) rejected on inquiry, (\d+) marked invalid, (\d+) errors/);
    assert.ok(summary, 'no summary line');
    assert.ok(Number(summary[1]) >= 3, `verified at the subscriber: ${summary[1]}`);
    assert.ok(Number(summary[2]) >= 1, `rejected at the subscriber (tampered in transit): ${summary[2]}`);
    assert.ok(Number(summary[3]) >= 1, `rejected by the inquirer (tampered in the store): ${summary[3]}`);
    assert.ok(Number(summary[4]) >= 1, `marked invalid by the server: ${summary[4]}`);
    assert.equal(summary[5], '0');
    assert.match(out, /status: 'mismatch'/);
    assert.match(out, /indicator--0c7b5b88-8ff7-4a4d-aa9d-feb398cd0061/);
    assert.match(out, /the server now refuses the altered record: .*-> 404 Not Found.*failed its integrity check/);
    assert.match(out, /editor answers: true; TAXII discovery "SETS demo TAXII server" lists 3 collections/);
    return out;
  }

  it('verifies the published CTI at the consumer and rejects the object tampered in transit (RabbitMQ)', async () => {
    const { url } = await rabbit();
    const out = await runDemo({ SETS_AMQP_URL: url });
    assert.doesNotMatch(out, /IN-PROCESS/);
  });

  it('falls back to the in-process broker, loudly, and the pipeline still works', async () => {
    const out = await runDemo({ SETS_DEMO_BROKER: 'in-process' });
    assert.match(out, /using the IN-PROCESS broker 'sets-demo'/);
  });
});
