/**
 * PEM text as a user pastes it into an editor (Node-RED dialog or n8n credential). A single-line input (the private key is a password
 * field) drops the line breaks of a pasted PEM: browsers strip newlines from an <input>'s value.
 * OpenSSL cannot read "-----BEGIN PRIVATE KEY-----MIGHAgEA…-----END PRIVATE KEY-----", so the
 * blocks are laid out again: header, base64 body in 64-character lines, footer (a PEM that was
 * laid out already comes back with the same blocks). Text that is not PEM, or PEM with header
 * lines, comes back unchanged: the ledger's own checks name what is wrong with it.
 */
const BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END \1-----/g;

export function normalisePem(text: string): string {
  const t = text.trim();
  if (!t.startsWith('-----BEGIN ')) return text;
  const blocks: string[] = [];
  let rest = t;
  for (const m of t.matchAll(BLOCK)) {
    const label = m[1];
    const body = m[2].replace(/\s+/g, '');
    // a header line (e.g. "Proc-Type: 4,ENCRYPTED" of an old encrypted key) cannot be rebuilt from
    // one line: leave such text as it was
    if (!/^[A-Za-z0-9+/=]*$/.test(body)) return text;
    const lines = body.match(/.{1,64}/g) ?? [];
    blocks.push([`-----BEGIN ${label}-----`, ...lines, `-----END ${label}-----`].join('\n'));
    rest = rest.replace(m[0], '');
  }
  if (blocks.length === 0 || rest.trim() !== '') return text;
  return blocks.join('\n') + '\n';
}
