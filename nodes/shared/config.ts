/** Settings parsing lives in lib (shared with the n8n nodes); re-exported for the Node-RED nodes. */
export * from '../../lib/ops/settings';
