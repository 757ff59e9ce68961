// identity-agent.js — the identity agent's socket protocol (agent-ipc/PROTOCOL.md, version 1)
// for web pages, over the agent's loopback web bridge (WebSocket `/v1/socket`).
// A dependency-free ES module: import it as it is; it is versioned with the protocol.

/** The protocol version this client speaks (the `hello` request carries it). */
export const PROTOCOL_VERSION = 1;

/** The error code of a request that could not finish because the connection ended. */
export const DISCONNECTED = "disconnected";

/**
 * An error the agent answered (`code` is one of the protocol's error codes, `data` its details
 * when the agent gave any), or `disconnected` when the connection to the agent ended.
 */
export class AgentError extends Error {
  /**
   * @param {string} code the protocol's error code, or "disconnected"
   * @param {string} message words for people
   * @param {object} [data] the error's details (e.g. `{tries_left: 2}` for `wrong_pin`)
   */
  constructor(code, message, data) {
    super(message || code);
    this.name = "AgentError";
    this.code = code;
    this.data = data === undefined ? null : data;
  }
}

/** The WebSocket URL of the bridge at `base` (`http://127.0.0.1:PORT` → `ws://127.0.0.1:PORT/v1/socket`). */
export function socketUrl(base) {
  const url = new URL("/v1/socket", String(base));
  if (url.protocol === "http:") url.protocol = "ws:";
  else if (url.protocol === "https:") url.protocol = "wss:";
  else if (url.protocol !== "ws:" && url.protocol !== "wss:") {
    throw new AgentError("bad_request", `not an http(s) URL: ${base}`);
  }
  return url.toString();
}

/** A connection to the identity agent, made by `IdentityAgent.connect`. */
export class IdentityAgent {
  /**
   * Connects to the agent's bridge at `base` and says hello.
   * @param {string} base the bridge, e.g. "http://127.0.0.1:8791"
   * @param {{client?: string, WebSocket?: Function, timeoutMs?: number}} [options]
   *   `client` names this page in the agent's log; `WebSocket` replaces the global one;
   *   `timeoutMs` bounds the connection and hello (10 s by default).
   * @returns {Promise<IdentityAgent>}
   */
  static async connect(base, options = {}) {
    const Socket = options.WebSocket || globalThis.WebSocket;
    if (typeof Socket !== "function") {
      throw new AgentError(DISCONNECTED, "this browser cannot open a WebSocket");
    }
    let socket;
    try {
      socket = new Socket(socketUrl(base));
    } catch (error) {
      if (error instanceof AgentError) throw error;
      throw new AgentError(DISCONNECTED, `the identity agent cannot be reached at ${base}`);
    }
    const agent = new IdentityAgent(socket);
    const timeoutMs = options.timeoutMs ?? 10000;
    await agent.#opened(timeoutMs);
    const params = { protocol: PROTOCOL_VERSION };
    if (options.client) params.client = options.client;
    try {
      agent.hello = await agent.#call("hello", params);
    } catch (error) {
      agent.close();
      throw error;
    }
    return agent;
  }

  #socket;
  #nextId = 1;
  #pending = new Map();
  #listeners = new Map();
  #iterators = new Set();
  #subscribed = null;
  #ended = null;
  #settle;

  /** Use `IdentityAgent.connect`. */
  constructor(socket) {
    this.#socket = socket;
    /** The agent's answer to `hello`: `{protocol, agent_version, capabilities}`. */
    this.hello = null;
    /** A promise that resolves (with the reason, an AgentError) when the connection ends. */
    this.closed = new Promise((resolve) => {
      this.#settle = resolve;
    });
    socket.onmessage = (message) => this.#receive(message.data);
    socket.onclose = () => this.#end(new AgentError(DISCONNECTED, "the connection to the identity agent ended"));
    socket.onerror = () => this.#end(new AgentError(DISCONNECTED, "the identity agent cannot be reached"));
  }

  #opened(timeoutMs) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#end(new AgentError(DISCONNECTED, "the identity agent did not answer"));
      }, timeoutMs);
      this.closed.then((reason) => {
        clearTimeout(timer);
        reject(reason);
      });
      this.#socket.onopen = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  /** Whether the connection has ended. */
  get isClosed() {
    return this.#ended !== null;
  }

  #end(reason) {
    if (this.#ended) return;
    this.#ended = reason;
    try {
      this.#socket.close();
    } catch {
      // Already closed.
    }
    for (const { reject } of this.#pending.values()) reject(reason);
    this.#pending.clear();
    for (const iterator of this.#iterators) iterator.finish();
    this.#iterators.clear();
    this.#settle(reason);
  }

  #receive(text) {
    let message;
    try {
      message = JSON.parse(text);
    } catch {
      return; // Not a line of the protocol: nothing to match it with.
    }
    if (message === null || typeof message !== "object") return;
    if (typeof message.event === "string") {
      this.#dispatch({ event: message.event, data: message.data ?? null });
      return;
    }
    const error = message.error
      ? new AgentError(message.error.code, message.error.message, message.error.data)
      : null;
    if (message.id === null || message.id === undefined) {
      // About the connection as a whole (shutting_down, subscriber_overflow, …): it ends.
      if (error) this.#end(error);
      return;
    }
    const waiting = this.#pending.get(message.id);
    if (!waiting) return;
    this.#pending.delete(message.id);
    if (error) waiting.reject(error);
    else waiting.resolve(message.result ?? null);
  }

  #dispatch(event) {
    for (const callback of [...(this.#listeners.get(event.event) || [])]) {
      try {
        callback(event.data, event);
      } catch (e) {
        setTimeout(() => {
          throw e;
        });
      }
    }
    for (const callback of [...(this.#listeners.get("*") || [])]) {
      try {
        callback(event.data, event);
      } catch (e) {
        setTimeout(() => {
          throw e;
        });
      }
    }
    for (const iterator of this.#iterators) iterator.push(event);
  }

  #call(method, params) {
    if (this.#ended) return Promise.reject(this.#ended);
    const id = this.#nextId++;
    const request = { id, method };
    if (params !== undefined && params !== null) request.params = params;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      try {
        this.#socket.send(JSON.stringify(request));
      } catch {
        this.#end(new AgentError(DISCONNECTED, "the connection to the identity agent ended"));
      }
    });
  }

  /** Sends `method` with `params` and resolves with its result (or rejects with an AgentError). */
  request(method, params) {
    return this.#call(method, params);
  }

  #subscribe() {
    if (!this.#subscribed) {
      this.#subscribed = this.#call("subscribe");
      this.#subscribed.catch(() => {});
    }
    return this.#subscribed;
  }

  /** The agent's status: version, PC/SC, readers and their cards, the session. */
  status() {
    return this.#call("status");
  }

  /** The readers and the card in each. */
  readers() {
    return this.#call("readers");
  }

  /** Signs in with the card in `reader` (optional); the agent asks for the PIN itself. */
  login({ reader } = {}) {
    return this.#call("login", reader ? { reader } : {});
  }

  /** Ends the session. */
  logout() {
    return this.#call("logout");
  }

  /** The signed-in user's roles: `{roles, selected, default}`. */
  roles() {
    return this.#call("roles");
  }

  /** Selects a role for the session (`remember`: make it this user's default here). */
  selectRole({ role, remember } = {}) {
    const params = { role };
    if (remember !== undefined) params.remember = remember;
    return this.#call("select_role", params);
  }

  /** The session's ticket for relying applications: `{ticket, expires_at}`. */
  ticket() {
    return this.#call("ticket");
  }

  /** The Smartcard Details the service holds for the card in `reader` (optional). */
  cardDetails({ reader } = {}) {
    return this.#call("card_details", reader ? { reader } : {});
  }

  /** Renews the signed-in card's certificates; progress arrives as `operation_progress` events. */
  renew() {
    return this.#call("renew");
  }

  /** Repairs the card `serial` in `reader` (an officer whose role holds B0267). */
  repair({ reader, serial } = {}) {
    const params = { serial };
    if (reader) params.reader = reader;
    return this.#call("repair", params);
  }

  /** Stops operation `id` before the card is changed. */
  cancelOperation(id) {
    return this.#call("cancel_operation", { operation: id });
  }

  /** Checks (and with `heal`, mends) the card in `reader`. */
  doctor({ reader, heal } = {}) {
    const params = {};
    if (reader) params.reader = reader;
    if (heal !== undefined) params.heal = heal;
    return this.#call("doctor", params);
  }

  /**
   * Calls `callback(data, event)` for each event named `name` ("*" for all); subscribes on
   * first use. Returns a function that removes the callback.
   */
  on(name, callback) {
    if (!this.#listeners.has(name)) this.#listeners.set(name, new Set());
    this.#listeners.get(name).add(callback);
    this.#subscribe();
    return () => {
      this.#listeners.get(name)?.delete(callback);
    };
  }

  /**
   * The events from now on, `{event, data}`, as an async iterator (subscribes on first use);
   * it ends when the connection ends or the loop is left.
   */
  events() {
    const queue = [];
    const waiters = [];
    let done = false;
    const iterators = this.#iterators;
    const feed = {
      push(event) {
        const waiter = waiters.shift();
        if (waiter) waiter({ value: event, done: false });
        else queue.push(event);
      },
      finish() {
        done = true;
        for (const waiter of waiters.splice(0)) waiter({ value: undefined, done: true });
      },
    };
    if (this.#ended) done = true;
    else iterators.add(feed);
    this.#subscribe();
    return {
      next() {
        if (queue.length) return Promise.resolve({ value: queue.shift(), done: false });
        if (done) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve) => waiters.push(resolve));
      },
      return() {
        iterators.delete(feed);
        feed.finish();
        return Promise.resolve({ value: undefined, done: true });
      },
      [Symbol.asyncIterator]() {
        return this;
      },
    };
  }

  /** Closes the connection; pending requests reject with `disconnected`. */
  close() {
    this.#end(new AgentError(DISCONNECTED, "the connection to the identity agent was closed"));
  }
}
