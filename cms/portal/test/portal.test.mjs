// Unit tests of the portal's page logic that needs no browser: `node --test cms/portal/test/`.
// portal.js imports ./identity-agent.js as the service serves them side by side, so both are
// copied into a temporary directory first.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, copyFileSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, "..", "..", "..");
const served = mkdtempSync(join(tmpdir(), "portal-"));
copyFileSync(join(here, "..", "portal.js"), join(served, "portal.js"));
copyFileSync(join(root, "agent-ipc", "js", "identity-agent.js"), join(served, "identity-agent.js"));
const { explain, displayDate } = await import(join(served, "portal.js"));

/** The error codes of the protocol's closed set, from PROTOCOL.md's table. */
function protocolCodes() {
  const text = readFileSync(join(root, "agent-ipc", "PROTOCOL.md"), "utf8");
  const table = text.slice(text.indexOf("## Error codes"));
  return [...table.matchAll(/^\| `([a-z_]+)` \|/gm)].map((m) => m[1]);
}

test("every error code of the protocol has its own words", () => {
  const codes = protocolCodes();
  assert.ok(codes.length >= 30, `${codes.length} codes found`);
  const fallback = explain({ code: "no_such_code" });
  for (const code of [...codes, "disconnected"]) {
    const words = explain({ code, message: "m", data: {} });
    assert.ok(words.length > 20, code);
    assert.notEqual(words, fallback, `${code} falls back to the generic words`);
  }
});

test("a wrong PIN says the tries left, and warns at the last", () => {
  assert.match(explain({ code: "wrong_pin", data: { tries_left: 2 } }), /2 tries left/);
  assert.match(explain({ code: "wrong_pin", data: { tries_left: 1 } }), /1 try left before your smartcard locks/);
});

test("the service's refusals are said in words, card_full first", () => {
  assert.match(explain({ code: "cms_refused", data: { cms_code: "card_full" } }), /Registration Authority must repair/);
  assert.match(explain({ code: "cms_refused", data: { cms_code: "agent_version_blocked" } }), /update it/);
  assert.match(
    explain({ code: "cms_refused", message: "odd", data: { cms_code: "new_code" } }),
    /refused: odd/,
  );
});

test("no message sends anyone to restart the agent, reboot or edit the registry", () => {
  for (const code of [...protocolCodes(), "disconnected"]) {
    const words = explain({ code, data: {} }).toLowerCase();
    for (const banned of ["restart", "reboot", "registry", "log off"]) {
      assert.ok(!words.includes(banned), `${code}: ${banned}`);
    }
  }
});

test("dates read as the national table prints them", () => {
  assert.equal(displayDate("2019-11-21"), "21-Nov-2019");
  assert.equal(displayDate("2028-01-05"), "5-Jan-2028");
  assert.equal(displayDate(null), "");
});
