/**
 * README's main command, end to end: `node dist/scripts/demo.js` (what `npm run demo` runs after
 * the build) in a child process with its own hardhat chain and Node-RED, against the test
 * RabbitMQ. It must print genuine CTI as verified and the object altered in transit as rejected,
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
    assert.match(out, /Node-RED editor: http:\/\/127\.0\.0\.1:\d+\//);
    const summary = out.match(/summary: (\d+) verified, (\d+) rejected, (\d+) errors/);
    assert.ok(summary, 'no summary line');
    assert.ok(Number(summary[1]) >= 3, `verified ${summary[1]}`);
    assert.ok(Number(summary[2]) >= 1, `rejected ${summary[2]}`);
    assert.equal(summary[3], '0');
    assert.match(out, /status: 'mismatch'/);
    assert.match(out, /indicator--0c7b5b88-8ff7-4a4d-aa9d-feb398cd0061/);
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
