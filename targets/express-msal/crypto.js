// At-rest encryption for option4: AES-256-GCM records that name their key id,
// and a keyed hash that turns a session id into a store key.
//
// Why key ids: a record written under key "k1" must stay readable after the
// deployment moves to "k2" (ENCRYPTION_KEY_ID=k2, ENCRYPTION_PREVIOUS_KEY_IDS=k1),
// so every record says which key sealed it. Keys are derived from one secret
// per key id with HKDF, so every instance with the same secret agrees.
//
// Why the record's store key is the additional authenticated data: a reader
// of the store who copies one session's token partition under another
// session's key gets a record that fails to open instead of a working cache.

"use strict";

const crypto = require("node:crypto");

const VERSION = "v1";
const IV_BYTES = 12; // GCM's recommended nonce size
const TAG_BYTES = 16;

class UndecryptableError extends Error {
  constructor(detail) {
    super(`undecryptable record: ${detail}`);
    this.name = "UndecryptableError";
  }
}

class Sealer {
  /**
   * @param {string} secret the deployment's ENCRYPTION_SECRET
   * @param {string} keyId the key new records are sealed with
   * @param {string[]} previousKeyIds keys that may still open old records
   */
  constructor(secret, keyId, previousKeyIds = []) {
    if (!secret) throw new Error("ENCRYPTION_SECRET is empty");
    if (!/^[A-Za-z0-9_-]+$/.test(keyId)) throw new Error(`bad key id ${keyId}`);
    this.keyId = keyId;
    this.keys = new Map();
    for (const id of [keyId, ...previousKeyIds]) {
      this.keys.set(id, derive(secret, `aes-256-gcm:${id}`));
    }
    // The store-key hash has its own key, so it reveals nothing about the
    // encryption keys and does not change when they rotate.
    this.hashKey = derive(secret, "store-key-hmac");
    this.undecryptable = 0;
  }

  /** Seals `plaintext` (a string) bound to `aad` (the record's store key). */
  seal(plaintext, aad) {
    const iv = crypto.randomBytes(IV_BYTES);
    const cipher = crypto.createCipheriv("aes-256-gcm", this.keys.get(this.keyId), iv);
    cipher.setAAD(Buffer.from(aad, "utf8"));
    const body = Buffer.concat([cipher.update(plaintext, "utf8"), cipher.final()]);
    const sealed = Buffer.concat([iv, body, cipher.getAuthTag()]);
    return `${VERSION}.${this.keyId}.${sealed.toString("base64url")}`;
  }

  /** Opens a record sealed by `seal` with the same `aad`; throws UndecryptableError. */
  open(record, aad) {
    try {
      const [version, keyId, data] = String(record).split(".");
      if (version !== VERSION || !data) throw new UndecryptableError("unknown format");
      const key = this.keys.get(keyId);
      if (!key) throw new UndecryptableError(`unknown key id ${keyId}`);
      const sealed = Buffer.from(data, "base64url");
      if (sealed.length < IV_BYTES + TAG_BYTES) throw new UndecryptableError("too short");
      const iv = sealed.subarray(0, IV_BYTES);
      const tag = sealed.subarray(sealed.length - TAG_BYTES);
      const decipher = crypto.createDecipheriv("aes-256-gcm", key, iv);
      decipher.setAAD(Buffer.from(aad, "utf8"));
      decipher.setAuthTag(tag);
      const body = sealed.subarray(IV_BYTES, sealed.length - TAG_BYTES);
      return Buffer.concat([decipher.update(body), decipher.final()]).toString("utf8");
    } catch (e) {
      this.undecryptable += 1;
      if (e instanceof UndecryptableError) throw e;
      throw new UndecryptableError(e.message);
    }
  }

  /** A store key for a session id that cannot be replayed as a cookie. */
  hashId(sessionId) {
    return crypto.createHmac("sha256", this.hashKey).update(sessionId).digest("base64url");
  }
}

function derive(secret, info) {
  return Buffer.from(crypto.hkdfSync("sha256", secret, "express-msal-target", info, 32));
}

module.exports = { Sealer, UndecryptableError };
