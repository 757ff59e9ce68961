// Unit tests of the JS client against a scripted WebSocket: `node --test agent-ipc/js/test/`.
import { test } from "node:test";
import assert from "node:assert/strict";
import { IdentityAgent, AgentError, PROTOCOL_VERSION, socketUrl } from "../identity-agent.js";

/** A WebSocket stand-in: records what the client sends and lets the test answer. */
class FakeSocket {
  static last = null;
  constructor(url) {
    this.url = url;
    this.sent = [];
    this.closed = false;
    FakeSocket.last = this;
    this.autoHello = true;
    setTimeout(() => this.onopen && this.onopen(), 0);
  }
  send(text) {
    const request = JSON.parse(text);
    this.sent.push(request);
    if (request.method === "hello" && FakeSocket.helloAnswer) {
      setTimeout(() => this.deliver(FakeSocket.helloAnswer(request)), 0);
    }
  }
  deliver(message) {
    this.onmessage({ data: JSON.stringify(message) });
  }
  close() {
    if (this.closed) return;
    this.closed = true;
    setTimeout(() => this.onclose && this.onclose({}), 0);
  }
  drop() {
    this.closed = true;
    this.onclose({});
  }
}

FakeSocket.helloAnswer = (request) => ({
  id: request.id,
  result: { protocol: 1, agent_version: "0.1.0", capabilities: ["hello", "status"] },
});

const tick = () => new Promise((resolve) => setTimeout(resolve, 0));

async function connected() {
  const agent = await IdentityAgent.connect("http://127.0.0.1:8791", {
    client: "test",
    WebSocket: FakeSocket,
  });
  return { agent, socket: FakeSocket.last };
}

test("the socket URL is the bridge's /v1/socket over ws", () => {
  assert.equal(socketUrl("http://127.0.0.1:8791"), "ws://127.0.0.1:8791/v1/socket");
  assert.equal(socketUrl("https://localhost:9/"), "wss://localhost:9/v1/socket");
  assert.throws(() => socketUrl("ftp://x/"), AgentError);
});

test("connect says hello with the protocol version first", async () => {
  const { agent, socket } = await connected();
  assert.equal(socket.url, "ws://127.0.0.1:8791/v1/socket");
  assert.deepEqual(socket.sent[0], {
    id: 1,
    method: "hello",
    params: { protocol: PROTOCOL_VERSION, client: "test" },
  });
  assert.equal(agent.hello.agent_version, "0.1.0");
  agent.close();
});

test("a refused hello rejects connect with the agent's code and closes", async () => {
  FakeSocket.helloAnswer = (request) => ({
    id: request.id,
    error: { code: "protocol_mismatch", message: "protocol 2", data: { agent: 2, client: 1 } },
  });
  try {
    await assert.rejects(
      IdentityAgent.connect("http://127.0.0.1:1", { WebSocket: FakeSocket }),
      (e) => e instanceof AgentError && e.code === "protocol_mismatch" && e.data.agent === 2,
    );
    assert.ok(FakeSocket.last.closed);
  } finally {
    FakeSocket.helloAnswer = (request) => ({
      id: request.id,
      result: { protocol: 1, agent_version: "0.1.0", capabilities: [] },
    });
  }
});

test("replies are matched by id, out of order", async () => {
  const { agent, socket } = await connected();
  const login = agent.login({ reader: "Virtual PCD 00 00" });
  const status = agent.status();
  const [loginReq, statusReq] = socket.sent.slice(1);
  assert.deepEqual(loginReq, { id: 2, method: "login", params: { reader: "Virtual PCD 00 00" } });
  assert.deepEqual(statusReq, { id: 3, method: "status" });
  socket.deliver({ id: 3, result: { agent_version: "0.1.0" } });
  socket.deliver({ id: 2, result: { state: "signed_in" } });
  assert.deepEqual(await status, { agent_version: "0.1.0" });
  assert.deepEqual(await login, { state: "signed_in" });
  agent.close();
});

test("methods send the protocol's names and params", async () => {
  const { agent, socket } = await connected();
  const calls = [
    agent.selectRole({ role: "R1", remember: false }),
    agent.cardDetails({ reader: "Virtual PCD 00 01" }),
    agent.repair({ reader: "Virtual PCD 00 01", serial: "FEDCBA9876543210" }),
    agent.cancelOperation("op-3"),
    agent.doctor({ heal: true }),
    agent.renew(),
    agent.ticket(),
  ];
  for (const call of calls) call.catch(() => {});
  const sent = socket.sent.slice(1).map(({ method, params }) => ({ method, params }));
  assert.deepEqual(sent, [
    { method: "select_role", params: { role: "R1", remember: false } },
    { method: "card_details", params: { reader: "Virtual PCD 00 01" } },
    { method: "repair", params: { serial: "FEDCBA9876543210", reader: "Virtual PCD 00 01" } },
    { method: "cancel_operation", params: { operation: "op-3" } },
    { method: "doctor", params: { heal: true } },
    { method: "renew", params: undefined },
    { method: "ticket", params: undefined },
  ]);
  agent.close();
});

test("an error reply rejects with an AgentError carrying code, message and data", async () => {
  const { agent, socket } = await connected();
  const login = agent.login();
  socket.deliver({
    id: 2,
    error: { code: "wrong_pin", message: "Wrong PIN: 2 tries left", data: { tries_left: 2 } },
  });
  await assert.rejects(login, (e) => {
    assert.ok(e instanceof AgentError);
    assert.equal(e.code, "wrong_pin");
    assert.equal(e.message, "Wrong PIN: 2 tries left");
    assert.deepEqual(e.data, { tries_left: 2 });
    return true;
  });
  agent.close();
});

test("on() subscribes once and calls back per event; off stops it", async () => {
  const { agent, socket } = await connected();
  const seen = [];
  const off = agent.on("operation_progress", (data) => seen.push(data.operation.step));
  agent.on("card_removed", () => seen.push("removed"));
  const subscribes = socket.sent.filter((r) => r.method === "subscribe");
  assert.equal(subscribes.length, 1);
  socket.deliver({ id: subscribes[0].id, result: { subscribed: true } });
  socket.deliver({ event: "operation_progress", data: { operation: { step: "started" } } });
  socket.deliver({ event: "card_removed", data: { reader: "r" } });
  off();
  socket.deliver({ event: "operation_progress", data: { operation: { step: "confirmed" } } });
  assert.deepEqual(seen, ["started", "removed"]);
  agent.close();
});

test("events() iterates events in order and ends when the connection drops", async () => {
  const { agent, socket } = await connected();
  const iterator = agent.events();
  assert.equal(socket.sent.filter((r) => r.method === "subscribe").length, 1);
  socket.deliver({ event: "session_state", data: { state: "waiting_for_pin" } });
  socket.deliver({ event: "pcsc_available" });
  const collected = [];
  const loop = (async () => {
    for await (const event of iterator) collected.push(event);
  })();
  await tick();
  socket.drop();
  await loop;
  assert.deepEqual(collected, [
    { event: "session_state", data: { state: "waiting_for_pin" } },
    { event: "pcsc_available", data: null },
  ]);
});

test("a dropped connection rejects every pending request with disconnected", async () => {
  const { agent, socket } = await connected();
  const renew = agent.renew();
  const status = agent.status();
  socket.drop();
  for (const pending of [renew, status]) {
    await assert.rejects(pending, (e) => e instanceof AgentError && e.code === "disconnected");
  }
  const reason = await agent.closed;
  assert.equal(reason.code, "disconnected");
  await assert.rejects(agent.readers(), (e) => e.code === "disconnected");
});

test("a connection-wide error line (id null) ends the connection with its code", async () => {
  const { agent, socket } = await connected();
  const pending = agent.status();
  socket.deliver({ id: null, error: { code: "shutting_down", message: "the agent is stopping" } });
  await assert.rejects(pending, (e) => e.code === "shutting_down");
  assert.ok(agent.isClosed);
});

test("connect rejects with disconnected when the socket fails to open", async () => {
  class Refused extends FakeSocket {
    constructor(url) {
      super(url);
      this.onopen = null;
      setTimeout(() => this.onerror && this.onerror({}), 0);
    }
    set onopen(_) {}
    get onopen() {
      return null;
    }
  }
  await assert.rejects(
    IdentityAgent.connect("http://127.0.0.1:1", { WebSocket: Refused }),
    (e) => e.code === "disconnected",
  );
});
