// This instance's counters, rendered as Prometheus text at /metrics with the
// reference app's metric names, so the harness's sampler reads them alike.

"use strict";

class Metrics {
  constructor(instance) {
    this.instance = instance;
    this.idpCalls = new Map(); // "call\0outcome" -> n
    this.tokenSources = new Map(); // "cache" | "refresh" -> n
  }

  /** One HTTP call to the IdP; `call` is the grant or endpoint, `outcome` ok or a failure kind. */
  idpCall(call, outcome) {
    const key = `${call}\0${outcome}`;
    this.idpCalls.set(key, (this.idpCalls.get(key) || 0) + 1);
  }

  tokenSource(source) {
    this.tokenSources.set(source, (this.tokenSources.get(source) || 0) + 1);
  }

  /**
   * @param {{store: string, entries?: number, bytes?: number}[]} stores what
   *   each store holds as this instance sees it; a store that did not answer
   *   is left out, as the reference app does.
   * @param {number} undecryptable records that failed to open (option4)
   */
  render(stores, undecryptable) {
    const i = `instance="${this.instance}"`;
    const out = [];
    out.push("# HELP app_process_resident_memory_bytes Resident set size of this process.");
    out.push("# TYPE app_process_resident_memory_bytes gauge");
    out.push(`app_process_resident_memory_bytes{${i}} ${process.memoryUsage.rss()}`);
    out.push("# HELP app_idp_calls_total Calls this instance made to the identity provider.");
    out.push("# TYPE app_idp_calls_total counter");
    for (const [key, n] of [...this.idpCalls].sort()) {
      const [call, outcome] = key.split("\0");
      out.push(`app_idp_calls_total{${i},call="${call}",outcome="${outcome}"} ${n}`);
    }
    out.push("# HELP app_token_source_total Access tokens used, by where MSAL says they came from.");
    out.push("# TYPE app_token_source_total counter");
    for (const [source, n] of [...this.tokenSources].sort()) {
      out.push(`app_token_source_total{${i},source="${source}"} ${n}`);
    }
    out.push("# TYPE app_undecryptable_records_total counter");
    out.push(`app_undecryptable_records_total{${i}} ${undecryptable}`);
    out.push("# HELP app_store_entries Entries in a store as this instance sees it (absent: store unreachable).");
    out.push("# TYPE app_store_entries gauge");
    out.push("# TYPE app_store_bytes gauge");
    for (const s of stores) {
      if (Number.isFinite(s.entries)) out.push(`app_store_entries{${i},store="${s.store}"} ${s.entries}`);
      if (Number.isFinite(s.bytes)) out.push(`app_store_bytes{${i},store="${s.store}"} ${s.bytes}`);
    }
    // An in-process token cache also says how many accounts (users) it holds.
    for (const s of stores.filter((s) => Number.isFinite(s.accounts))) {
      out.push("# HELP app_token_cache_accounts Accounts (users) this process's own token cache holds tokens for.");
      out.push("# TYPE app_token_cache_accounts gauge");
      out.push(`app_token_cache_accounts{${i}} ${s.accounts}`);
    }
    return out.join("\n") + "\n";
  }
}

module.exports = { Metrics };
