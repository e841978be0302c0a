#!/usr/bin/env node
// An independent chatnode client built only from npm packages: ws (RFC 6455
// over Node's TLS), protobufjs reading proto/chat.proto at run time, and
// libsodium-wrappers (Ed25519, X25519, sealed boxes). It checks that the
// wire protocol, the signed transcripts (context strings include their
// trailing NUL) and the TLS channel binding are implementable from the
// documentation alone, and that the C chatclient's prekey bundle verifies.
//
// usage: node interop.js CHATNODE CHATCLIENT
'use strict';

const assert = require('node:assert/strict');
const { spawn, spawnSync } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const protobuf = require('protobufjs');
const sodium = require('libsodium-wrappers');
const WebSocket = require('ws');

const ROOT = path.resolve(__dirname, '..', '..');
const [chatnodeBin, chatclientBin] = process.argv.slice(2);
if (!chatnodeBin || !chatclientBin) {
  console.error('usage: node interop.js CHATNODE CHATCLIENT');
  process.exit(2);
}

const root = protobuf.loadSync(path.join(ROOT, 'proto', 'chat.proto'));
const ClientFrame = root.lookupType('chat.ClientFrame');
const ServerFrame = root.lookupType('chat.ServerFrame');
const Status = root.lookupEnum('chat.Status').values;
const Kind = root.lookupEnum('chat.Kind').values;

// proto/cn_proto.h: context strings are signed with their trailing NUL.
const ctx = (s) => Buffer.concat([Buffer.from(s, 'utf8'), Buffer.from([0])]);
const AUTH_CONTEXT = ctx('chatnode auth v1');
const REGISTER_CONTEXT = ctx('chatnode register v1');
const PREKEY_CONTEXT = ctx('chatnode signed prekey v1');

function u64be(v) {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(v.toString()));
  return b;
}

function u32be(v) {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(v >>> 0);
  return b;
}

// ------------------------------------------------------------------ node

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

async function startNode(work) {
  const cert = path.join(work, 'cert.pem');
  const key = path.join(work, 'key.pem');
  const r = spawnSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt',
    'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', cert, '-days', '30', '-subj',
    '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1']);
  assert.equal(r.status, 0, 'openssl failed');
  const port = await freePort();
  const logPath = path.join(work, 'node.log');
  const log = fs.openSync(logPath, 'a');
  const proc = spawn(chatnodeBin, ['--listen', `127.0.0.1:${port}`, '--data',
    path.join(work, 'data'), '--tls-cert', cert, '--tls-key', key, '--admin-socket', '',
    '--metrics', '', '--threads', '2'], { stdio: ['ignore', 'ignore', log] });
  const deadline = Date.now() + 20000;
  while (Date.now() < deadline) {
    if (/event=listening addr=/.test(fs.readFileSync(logPath, 'utf8'))) {
      return { proc, port, url: `wss://127.0.0.1:${port}`, logPath };
    }
    if (proc.exitCode !== null) throw new Error(`chatnode exited ${proc.exitCode}`);
    await new Promise((r2) => setTimeout(r2, 20));
  }
  throw new Error('chatnode did not start listening');
}

// ---------------------------------------------------------------- device

class Device {
  constructor(url, handle) {
    this.url = url;
    this.handle = handle;
    const kp = sodium.crypto_sign_keypair();
    this.pk = Buffer.from(kp.publicKey);
    this.sk = kp.privateKey;
    this.nextRid = 1;
    this.pending = new Map();
    this.pushes = [];
    this.waiters = [];
  }

  // Opens the WebSocket and resolves with the Challenge and the exporter.
  open() {
    return new Promise((resolve, reject) => {
      this.ws = new WebSocket(`${this.url}/ws`, { rejectUnauthorized: false });
      this.ws.binaryType = 'nodebuffer';
      let challenge = null;
      this.ws.on('error', reject);
      this.ws.on('message', (data, isBinary) => {
        assert.ok(isBinary, 'the node sends binary frames only');
        const f = ServerFrame.decode(data);
        if (f.challenge && !challenge) {
          challenge = f.challenge;
          // RFC 9266 style channel binding of this very TLS connection.
          const exporter = this.ws._socket.exportKeyingMaterial(32, 'EXPORTER-Channel-Binding');
          resolve({ challenge, exporter });
          return;
        }
        this.onFrame(f);
      });
    });
  }

  onFrame(f) {
    if (f.response) {
      const rid = f.response.requestId.toString();
      const p = this.pending.get(rid);
      if (p) {
        this.pending.delete(rid);
        p(f.response);
      }
      return;
    }
    this.pushes.push(f);
    for (const w of this.waiters.splice(0)) w();
  }

  call(body) {
    const requestId = this.nextRid++;
    const frame = ClientFrame.create({ requestId, ...body });
    const err = ClientFrame.verify(frame);
    assert.equal(err, null, err);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('request timed out')), 15000);
      this.pending.set(String(requestId), (r) => { clearTimeout(timer); resolve(r); });
      this.ws.send(ClientFrame.encode(frame).finish(), { binary: true });
    });
  }

  async nextPush(pred, ms = 15000) {
    const deadline = Date.now() + ms;
    for (;;) {
      const i = this.pushes.findIndex(pred);
      if (i >= 0) return this.pushes.splice(i, 1)[0];
      const left = deadline - Date.now();
      if (left <= 0) throw new Error('push did not come');
      await new Promise((r) => {
        const t = setTimeout(r, left);
        this.waiters.push(() => { clearTimeout(t); r(); });
      });
    }
  }

  transcript(context, ch, exporter, handle) {
    const parts = [context, Buffer.from(ch.nonce), Buffer.from(ch.nodeId), this.pk,
      u64be(ch.serverTime), exporter];
    if (handle !== undefined) {
      const h = Buffer.from(handle, 'utf8');
      parts.push(Buffer.from([h.length]), h);
    }
    return Buffer.concat(parts);
  }

  async register() {
    const { challenge, exporter } = await this.open();
    assert.equal(challenge.nonce.length, 32);
    assert.equal(challenge.nodeId.length, 32);
    const sig = sodium.crypto_sign_detached(
      this.transcript(REGISTER_CONTEXT, challenge, exporter, this.handle), this.sk);
    const r = await this.call({ register: { handle: this.handle, deviceId: this.pk,
      signature: Buffer.from(sig), deviceName: 'interop' } });
    assert.equal(r.status, Status.OK, `register: ${r.detail}`);
  }

  async auth() {
    const { challenge, exporter } = await this.open();
    const sig = sodium.crypto_sign_detached(
      this.transcript(AUTH_CONTEXT, challenge, exporter), this.sk);
    const r = await this.call({ auth: { deviceId: this.pk, signature: Buffer.from(sig) } });
    assert.equal(r.status, Status.OK, `auth: ${r.detail}`);
    assert.equal(r.authOk.handle, this.handle);
  }

  async uploadPrekeys(n) {
    const spk = sodium.crypto_box_keypair();
    const spkId = 1;
    const sig = sodium.crypto_sign_detached(
      Buffer.concat([PREKEY_CONTEXT, u32be(spkId), Buffer.from(spk.publicKey)]), this.sk);
    const otpks = [];
    for (let i = 0; i < n; i++) {
      otpks.push({ keyId: 100 + i, publicKey: Buffer.from(sodium.crypto_box_keypair().publicKey) });
    }
    const r = await this.call({ uploadPrekeys: { signedPrekey: { keyId: spkId,
      publicKey: Buffer.from(spk.publicKey), signature: Buffer.from(sig) },
    oneTimePrekeys: otpks } });
    assert.equal(r.status, Status.OK, `upload: ${r.detail}`);
    // A signature over anything else is refused by the node.
    const bad = Buffer.from(sig);
    bad[0] ^= 1;
    const r2 = await this.call({ uploadPrekeys: { signedPrekey: { keyId: spkId,
      publicKey: Buffer.from(spk.publicKey), signature: bad } } });
    assert.notEqual(r2.status, Status.OK, 'a bad signed prekey signature was accepted');
  }

  close() {
    if (this.ws) this.ws.close();
  }
}

// The bundle's signed prekey must verify under its device key (the device
// id, the Ed25519 identity key), whoever uploaded it.
function verifyBundle(b) {
  const sp = b.signedPrekey;
  assert.ok(sp, 'bundle without a signed prekey');
  assert.equal(b.deviceId.length, 32);
  assert.equal(sp.publicKey.length, 32);
  const msg = Buffer.concat([PREKEY_CONTEXT, u32be(sp.keyId), Buffer.from(sp.publicKey)]);
  return sodium.crypto_sign_verify_detached(sp.signature, msg, b.deviceId);
}

async function fetchBundle(dev, handle) {
  const r = await dev.call({ fetchPrekeys: { handle } });
  assert.equal(r.status, Status.OK, `fetch ${handle}: ${r.detail}`);
  assert.equal(r.prekeys.handle, handle);
  assert.equal(r.prekeys.bundles.length, 1);
  return r.prekeys.bundles[0];
}

// Sends an envelope (a sealed box to the recipient's X25519 identity) and
// returns the SendOk.
async function sendSealed(from, to, text) {
  const xpk = sodium.crypto_sign_ed25519_pk_to_curve25519(to.pk);
  const ct = Buffer.from(sodium.crypto_box_seal(Buffer.from(text), xpk));
  const messageId = crypto.randomBytes(16);
  const r = await from.call({ send: { messageId, kind: Kind.MESSAGE, to: to.handle,
    envelopes: [{ deviceId: to.pk, ciphertext: ct }] } });
  assert.equal(r.status, Status.OK, `send: ${r.detail}`);
  return messageId;
}

async function receiveSealed(dev, messageId) {
  const f = await dev.nextPush((p) => p.deliver &&
    Buffer.from(p.deliver.messageId).equals(messageId));
  const d = f.deliver;
  const xpk = sodium.crypto_sign_ed25519_pk_to_curve25519(dev.pk);
  const xsk = sodium.crypto_sign_ed25519_sk_to_curve25519(dev.sk);
  const pt = Buffer.from(sodium.crypto_box_seal_open(d.ciphertext, xpk, xsk)).toString();
  const a = await dev.call({ ack: { seqs: [d.seq] } });
  assert.equal(a.status, Status.OK);
  return { deliver: d, text: pt };
}

function chatclient(node, home, ...args) {
  return spawnSync(chatclientBin, ['--server', node.url, '--insecure', '--home', home, ...args],
    { encoding: 'utf8', timeout: 60000 });
}

// ----------------------------------------------------------------- tests

async function main() {
  await sodium.ready;
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'cn-interop-'));
  const node = await startNode(work);
  const devices = [];
  let passed = 0;
  const check = (name) => { passed++; console.log(`ok ${passed} - ${name}`); };
  try {
    // The C reference client registers and uploads its prekeys.
    const carolHome = path.join(work, 'carol');
    const reg = chatclient(node, carolHome, 'register', 'carol');
    assert.equal(reg.status, 0, reg.stderr);
    const carolId = Buffer.from(reg.stdout.trim().split(/\s+/)[1], 'hex');
    check('C chatclient registered');

    const a = new Device(node.url, `js-a-${process.pid}`);
    const b = new Device(node.url, `js-b-${process.pid}`);
    devices.push(a, b);
    await a.register();
    await b.register();
    check('two Node.js devices registered (register transcript + TLS exporter)');
    a.close();
    b.close();
    await a.auth();
    await b.auth();
    check('both authenticated again on new connections (auth transcript)');
    await a.uploadPrekeys(5);
    await b.uploadPrekeys(5);
    check('prekeys uploaded; a bad signed prekey signature is refused');

    const cb = await fetchBundle(a, 'carol');
    assert.ok(Buffer.from(cb.deviceId).equals(carolId), 'bundle of another device');
    assert.ok(verifyBundle(cb), "the C client's signed prekey signature does not verify");
    assert.ok(cb.oneTimePrekey && cb.oneTimePrekey.publicKey.length === 32);
    const tampered = { ...cb, signedPrekey: { ...cb.signedPrekey,
      publicKey: Buffer.from(cb.signedPrekey.publicKey).map((x, i) => (i ? x : x ^ 1)) } };
    assert.ok(!verifyBundle(tampered), 'a tampered bundle verified');
    check("fetched the C chatclient's bundle and verified its signature");

    const bb = await fetchBundle(a, b.handle);
    assert.ok(verifyBundle(bb));
    const bb2 = await fetchBundle(a, b.handle);
    assert.notEqual(bb.oneTimePrekey.keyId, bb2.oneTimePrekey.keyId,
      'the same one-time prekey was handed out twice');
    check('fetched and verified a Node.js bundle; one-time prekeys are not reused');

    const d = await a.call({ getDevices: { handle: b.handle } });
    assert.equal(d.status, Status.OK);
    assert.ok(Buffer.from(d.devices.devices[0].deviceId).equals(b.pk));
    const id1 = await sendSealed(a, b, 'hello from a');
    const got1 = await receiveSealed(b, id1);
    assert.equal(got1.text, 'hello from a');
    assert.equal(got1.deliver.from, a.handle);
    assert.ok(Buffer.from(got1.deliver.fromDevice).equals(a.pk));
    const id2 = await sendSealed(b, a, 'hello back from b');
    const got2 = await receiveSealed(a, id2);
    assert.equal(got2.text, 'hello back from b');
    check('exchanged envelopes both ways through chatnode (Deliver + Ack)');

    // An Ack with silent_ok deletes without an AckOk: an answered Ack of the
    // same seq sent after it finds the entry gone, and nothing answers the
    // silent one (the node applies one connection's Acks in order).
    const id3 = await sendSealed(a, b, 'acked silently');
    const f3 = await b.nextPush((p) => p.deliver && Buffer.from(p.deliver.messageId).equals(id3));
    const silentRid = b.nextRid++;
    let stray = null;
    b.pending.set(String(silentRid), (r) => { stray = r; });
    const silent = ClientFrame.create({ requestId: silentRid,
      ack: { seqs: [f3.deliver.seq], silentOk: true } });
    assert.equal(ClientFrame.verify(silent), null);
    b.ws.send(ClientFrame.encode(silent).finish(), { binary: true });
    const again = await b.call({ ack: { seqs: [f3.deliver.seq] } });
    assert.equal(again.status, Status.OK);
    assert.equal(again.ackOk.deleted, 0, 'the silent Ack did not delete the entry');
    assert.equal(stray, null, 'a silent Ack was answered');
    check('an Ack with silent_ok deletes without an answer');

    // A retry with the same message id is answered as a duplicate.
    const xpk = sodium.crypto_sign_ed25519_pk_to_curve25519(b.pk);
    const ct = Buffer.from(sodium.crypto_box_seal(Buffer.from('once'), xpk));
    const mid = crypto.randomBytes(16);
    const body = { send: { messageId: mid, kind: Kind.MESSAGE, to: b.handle,
      envelopes: [{ deviceId: b.pk, ciphertext: ct }] } };
    const s1 = await a.call(body);
    const s2 = await a.call(body);
    assert.equal(s1.status, Status.OK);
    assert.equal(s2.status, Status.OK);
    assert.ok(s2.sendOk.duplicate, 'a retried send was not deduplicated');
    check('idempotent retry answered with duplicate=true');

    // Something that is not an E2E envelope, sent to the C client: it is
    // reported as undecryptable (recv --json "error"), never a crash.
    const junkId = crypto.randomBytes(16);
    const j = await a.call({ send: { messageId: junkId, kind: Kind.MESSAGE, to: 'carol',
      envelopes: [{ deviceId: carolId, ciphertext: crypto.randomBytes(200) }] } });
    assert.equal(j.status, Status.OK, j.detail);
    const rv = chatclient(node, carolHome, 'recv', '--json');
    assert.equal(rv.status, 0, rv.stderr);
    const lines = rv.stdout.trim().split('\n').map((l) => JSON.parse(l));
    assert.equal(lines.length, 1);
    assert.equal(lines[0].id, junkId.toString('hex'));
    assert.equal(lines[0].text, null);
    assert.ok(lines[0].error, 'no error field');
    check('the C client reports a foreign envelope as undecryptable');
  } finally {
    for (const dv of devices) dv.close();
    node.proc.kill('SIGTERM');
    await new Promise((r) => { if (node.proc.exitCode !== null) r(); else node.proc.on('exit', r); });
  }
  fs.rmSync(work, { recursive: true, force: true });
  console.log(`${passed} passed, 0 failed`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
