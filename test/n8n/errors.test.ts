/**
 * Lib errors as n8n shows them (nodes/n8n-shared/errors.ts): n8n-workflow's NodeError replaces any
 * message containing a Node.js system error code (ECONNREFUSED, ETIMEDOUT, ENOTFOUND, ECONNRESET,
 * EACCES, ENOENT, GETADDRINFO, ... in any case) by a generic sentence that names neither the
 * service nor the address. Ours keep the service, host:port and the reason in words; the raw code
 * is in the description and in `systemCode`.
 */
import * as assert from 'node:assert/strict';
import { NodeApiError, NodeOperationError, type INode } from 'n8n-workflow';
import { BusError } from '../../lib/bus/errors';
import { TaxiiError } from '../../lib/taxii/errors';
import { errorJson, operationError, plainMessage, toNodeError } from '../../nodes/n8n-shared/errors';

const node: INode = { id: 'n1', name: 'SETS', type: 'n8n-nodes-sets.sets', typeVersion: 1, position: [0, 0], parameters: {} };

/** n8n-workflow 1.120's COMMON_ERRORS keys. */
const N8N_KEYS = ['ECONNREFUSED', 'ECONNRESET', 'ENOTFOUND', 'ETIMEDOUT', 'ERRADDRINUSE', 'EADDRNOTAVAIL', 'ECONNABORTED', 'EHOSTUNREACH', 'EAI_AGAIN', 'ENOENT', 'EISDIR', 'ENOTDIR', 'EACCES', 'EEXIST', 'EPERM', 'GETADDRINFO'];

function systemError(code: string, message: string, extra: Record<string, unknown> = {}): Error {
  return Object.assign(new Error(message), { code, ...extra });
}

describe('n8n errors: connection failures keep the service, address and reason', () => {
  it('the n8n classes rewrite a message with ECONNREFUSED (why this module exists)', () => {
    const e = new NodeOperationError(node, new Error('connect ECONNREFUSED 127.0.0.1:9'));
    assert.equal(e.message, 'The service refused the connection - perhaps it is offline');
  });

  it('Node.js system error codes are put into words, with the address', () => {
    assert.equal(plainMessage('connect ECONNREFUSED 127.0.0.1:9'), 'connection refused (127.0.0.1:9)');
    assert.equal(plainMessage('getaddrinfo ENOTFOUND broker.example'), 'host name not found (broker.example)');
    assert.equal(plainMessage('connect ETIMEDOUT'), 'connection timed out');
    assert.equal(plainMessage('read ECONNRESET'), 'connection reset by the other side');
    assert.equal(plainMessage('listen EACCES: permission denied 0.0.0.0:80'), 'permission denied (0.0.0.0:80)');
    assert.equal(plainMessage("ENOENT: no such file or directory, open '/x/y'"), "no such file or directory, open '/x/y'");
    assert.equal(plainMessage('nothing to change'), 'nothing to change');
  });

  it('a broker error: the message n8n shows names host:port and the reason; the code is in the description', () => {
    const cause = systemError('ECONNREFUSED', 'connect ECONNREFUSED 127.0.0.1:9', { address: '127.0.0.1', port: 9 });
    const err = new BusError('CONNECT_FAILED', 'RabbitMQ broker 127.0.0.1:9 not reachable: connection refused', { cause: new BusError('CONNECT_FAILED', 'cannot connect: connect ECONNREFUSED 127.0.0.1:9', { cause }) });
    const e = toNodeError(node, err, 0);
    assert.ok(e instanceof NodeOperationError);
    assert.equal(e.message, 'RabbitMQ broker 127.0.0.1:9 not reachable: connection refused');
    assert.equal(e.description, 'code CONNECT_FAILED, system error ECONNREFUSED (127.0.0.1:9)');
    assert.equal(e.context.systemCode, 'ECONNREFUSED');
    assert.equal(e.context.itemIndex, 0);
    assert.deepEqual(errorJson(err), { error: 'RabbitMQ broker 127.0.0.1:9 not reachable: connection refused', code: 'CONNECT_FAILED', systemCode: 'ECONNREFUSED' });
  });

  it('a TAXII network error: NodeApiError naming the server by host:port, n8n does not replace it', () => {
    const cause = systemError('ENOTFOUND', 'getaddrinfo ENOTFOUND taxii.example', { hostname: 'taxii.example' });
    const url = 'https://taxii.example/taxii2/';
    const err = new TaxiiError(`TAXII GET ${url} failed: network ENOTFOUND: getaddrinfo ENOTFOUND taxii.example`, { code: 'NETWORK', method: 'GET', url, cause });
    const e = toNodeError(node, err);
    assert.ok(e instanceof NodeApiError);
    assert.equal(e.message, `TAXII server taxii.example:443 not reachable: host name not found (GET ${url})`);
    assert.match(String(e.description), /^code NETWORK, system error ENOTFOUND \(taxii\.example\)/);
  });

  it('no message of ours is rewritten, whatever system error code the lib message quotes', () => {
    for (const key of N8N_KEYS) {
      const raw = `something failed: ${key.toLowerCase()} at x`;
      const e = toNodeError(node, Object.assign(new Error(raw), { code: 'BAD_CONFIG' }));
      for (const k of N8N_KEYS) assert.ok(!e.message.toUpperCase().includes(k) || e.message === raw, `${key}: ${e.message}`);
      assert.doesNotMatch(e.message, /perhaps|consider setting|The connection|The file or directory|Forbidden by access/, key);
      const t = operationError(node, `cannot listen on 0.0.0.0:80: listen ${key}: x`);
      assert.match(t.message, /^cannot listen on 0\.0\.0\.0:80: /, key);
    }
  });
});
