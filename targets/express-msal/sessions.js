// express-session as every option uses it: the middleware's settings (the
// idle timeout on the cookie and in the store) and its callback methods as
// promises, with the one correction a handler that saves before answering
// needs (see `save`).

"use strict";

const session = require("express-session");

/** The session middleware over `store`, with the idle timeout of `settings`. */
function middleware(settings, store) {
  return session({
    name: settings.cookieName,
    secret: settings.sessionSecret,
    store,
    resave: false,
    saveUninitialized: false,
    // The cookie's expiry is the idle timeout from the last answer, as the
    // server's is: without rolling, express-session resends the cookie only
    // when the session changed, and a browser that only reads for longer
    // than the timeout drops a cookie whose session is still alive.
    rolling: true,
    cookie: { httpOnly: true, sameSite: "lax", secure: false, path: "/", maxAge: settings.sessionTtlSecs * 1000 },
  });
}

/**
 * Writes the session now, its expiry renewed first.
 *
 * express-session renews a session's expiry only when the response ends
 * (Session.touch), and the stores write the expiry the session carries. The
 * handlers save before they answer (so a failed write is a 503), and a
 * session loaded from the store still carries the expiry of its last full
 * write, which store touches never update (connect-pg-simple's touch writes
 * only its `expire` column). Saved without a touch, a session older than the
 * idle timeout was written as already expired until the end-of-request
 * touch: a read in between, a prune, or a crash before the touch lost it.
 * The harness found it: one session-loss per claims run in options 2 and 3
 * (README, "Fidelity").
 */
const save = (req) =>
  new Promise((ok, fail) => {
    req.session.touch();
    req.session.save((e) => (e ? fail(e) : ok()));
  });

/** A new session id, the session's content dropped (at sign-in). */
const regenerate = (req) => new Promise((ok, fail) => req.session.regenerate((e) => (e ? fail(e) : ok())));

/** The session removed from the store. */
const destroy = (req) => new Promise((ok, fail) => req.session.destroy((e) => (e ? fail(e) : ok())));

module.exports = { middleware, save, regenerate, destroy };
