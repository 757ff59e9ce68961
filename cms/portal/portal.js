// The portal pages' behaviour: each page's work with the identity agent, through its loopback
// bridge (the JS client, identity-agent.js). The server renders everything that can be shown
// without the agent; this adds the steps that need the card. No inline script: the CSP
// allows only this file and the client, and the bridge's URL comes from a <meta>.

import { IdentityAgent, AgentError } from "./identity-agent.js";

const $ = (id) => document.getElementById(id);

/** The national date format of the Smartcard Details table: 2019-11-21 → 21-Nov-2019. */
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
export function displayDate(iso) {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(iso || "");
  if (!m) return iso || "";
  return `${Number(m[3])}-${MONTHS[Number(m[2]) - 1]}-${m[1]}`;
}

/** What the service's refusals (`cms_refused`, `data.cms_code`) mean for the person at the page. */
const CMS_REFUSALS = {
  card_full:
    "This smartcard has been renewed as many times as it can be. Your Registration Authority must repair it (Repair Smartcard).",
  card_expired:
    "The certificates on this smartcard have expired, so it cannot be renewed by its holder. Take it to your Registration Authority, who can repair it.",
  card_cancelled:
    "This smartcard has been cancelled. Ask your Registration Authority for a new one.",
  agent_version_blocked:
    "The identity agent on this computer is a version that may not renew smartcards. Ask your IT service desk to update it; nothing on your card was changed.",
  card_not_repairable:
    "This smartcard does not need repairing: its certificates have not expired and it is not full. Its holder can renew it themselves.",
  own_card:
    "You cannot repair your own smartcard. Another Registration Authority officer must repair it.",
  activity_required:
    "Your selected role cannot repair smartcards: it needs activity B0267. Select that role at the identity agent and sign in again.",
  operation_in_progress:
    "A repair of this smartcard is already under way. Finish it first, or ask your Registration Authority.",
  no_active_certificate:
    "The service holds no current certificate for this smartcard. Your Registration Authority must repair it.",
  forbidden: "The Card Management Service does not allow you to do this with this smartcard.",
  unknown_card:
    "The Card Management Service does not know this smartcard. Ask your Registration Authority.",
  invalid_session:
    "Your session at the Card Management Service has ended. Sign in again.",
  session_expired:
    "Your session at the Card Management Service has expired. Sign in again.",
  management_key_rejected:
    "The smartcard did not answer the service's check. Nothing was changed; try again, and if it happens again ask your Registration Authority.",
};

/**
 * An agent error in words a nurse understands; every code of the protocol's closed set has
 * words here, and `disconnected` (the agent went away).
 */
export function explain(error) {
  const code = error instanceof AgentError || (error && error.code) ? error.code : "internal";
  const data = (error && error.data) || {};
  switch (code) {
    case "disconnected":
      return "The identity agent on this computer cannot be reached. Check it is running (its icon is in the system tray), then try again. If the card was being written, it is finished the next time you sign in.";
    case "pin_cancelled":
      return "You cancelled the passcode prompt. Nothing was changed. Choose the button again when you are ready.";
    case "wrong_pin": {
      const left = data.tries_left;
      if (left === 1)
        return "The passcode was wrong. You have 1 try left before your smartcard locks: check it carefully, or ask your Registration Authority.";
      if (typeof left === "number")
        return `The passcode was wrong. You have ${left} tries left. Nothing was changed; try again.`;
      return "The passcode was wrong. Nothing was changed; try again.";
    }
    case "pin_blocked":
      return "Your smartcard is locked because the passcode was entered wrongly too many times. Your Registration Authority can unlock it.";
    case "pinentry_failed":
      return "The identity agent could not show the passcode prompt. Ask your IT service desk.";
    case "pin_policy":
      return `That passcode cannot be used: ${error.message}. Choose 4 to 8 digits that are not an obvious run such as 1234 or 9999.`;
    case "card_removed":
      return "The smartcard was removed before the work was finished. Put it back in the reader: the identity agent finishes the work the next time you sign in with it, and the card keeps working.";
    case "no_card":
      return "There is no smartcard in the reader. Insert it and try again.";
    case "no_reader":
      return "No smartcard reader is connected, or the identity agent cannot tell which one to use. Connect the reader and try again.";
    case "not_piv":
      return "The smartcard in the reader cannot be read by the identity agent. Check it is your NHS smartcard, the right way up; if it is, ask your Registration Authority.";
    case "card_error":
      return "The smartcard gave an answer the identity agent cannot use, so nothing more was done. Take the card out, put it back and try again; if it happens again, ask your Registration Authority.";
    case "pcsc_unavailable":
      return "The computer's smartcard service is not running, so no card can be read. Ask your IT service desk.";
    case "certificate_expired":
      return "The certificates on the smartcard have expired. You cannot renew them yourself any more: take the card to your Registration Authority, who can repair it.";
    case "card_cancelled":
      return "This smartcard has been cancelled. Ask your Registration Authority for a new one.";
    case "cms_unreachable":
      return "The Card Management Service cannot be reached from this computer. Check the network and try again later. If the card was being written, it is finished the next time you sign in.";
    case "cms_refused": {
      const words = CMS_REFUSALS[data.cms_code];
      return words || `The Card Management Service refused: ${error.message}`;
    }
    case "busy":
      return "The identity agent is already doing something with a smartcard (signing in, renewing or checking). Wait for it to finish, then try again.";
    case "no_session":
      return "You are not signed in at the identity agent. Sign in again with your smartcard.";
    case "unknown_role":
      return "That role is not one of yours. Sign in again and choose one of your roles.";
    case "role_not_permitted":
      return "Your selected role does not allow this: repairing a smartcard needs a role with activity B0267. Select that role at the identity agent and sign in again.";
    case "unknown_operation":
      return "The identity agent does not know that operation any more. Start again.";
    case "shutting_down":
      return "The identity agent is stopping. Wait for it to start again, then try again.";
    case "subscriber_overflow":
      return "This page fell behind the identity agent's messages. Reload the page.";
    case "too_many_connections":
      return "Too many programs are talking to the identity agent at once. Close other portal tabs and try again.";
    case "permission_denied":
      return "The identity agent refused this page. Ask your IT service desk to allow this site in the agent's settings.";
    case "message_too_large":
    case "bad_request":
    case "unknown_method":
    case "not_supported":
    case "hello_required":
    case "protocol_mismatch":
      return "The identity agent on this computer does not work with this page (its version may be too old or too new). Ask your IT service desk to update it.";
    case "internal":
      return "Something went wrong inside the identity agent. Try again; if it happens again, ask your IT service desk.";
    default:
      return `The identity agent answered something this page does not know (${code}). Try again; if it happens again, ask your IT service desk.`;
  }
}

/** The agent bridge named by the page, connected as the portal. */
function connectAgent() {
  const meta = document.querySelector('meta[name="identity-agent-url"]');
  return IdentityAgent.connect(meta ? meta.content : "", { client: "cms-portal" });
}

function show(element, text) {
  if (element) element.textContent = text || "";
}

/** Sign in: the agent signs in (asking for the passcode) if it has not, then gives its ticket. */
function signInPage() {
  const button = $("sign-in");
  const message = $("message");
  const form = $("sign-in-form");
  let agent = null;
  const say = (text, isError) => {
    show(message, text);
    message.classList.toggle("error", Boolean(isError));
  };
  const postTicket = async () => {
    say("Signed in. Opening your profile…");
    const { ticket } = await agent.ticket();
    form.elements.ticket.value = ticket;
    form.submit();
  };
  const chooseRole = async (roles) => {
    const fieldset = $("role-choice");
    const options = $("role-options");
    options.replaceChildren();
    for (const role of roles.roles) {
      const id = `role-${role.id}`;
      const wrapper = document.createElement("div");
      const input = document.createElement("input");
      input.type = "radio";
      input.name = "role";
      input.value = role.id;
      input.id = id;
      input.checked = String(role.id) === String(roles.default);
      const label = document.createElement("label");
      label.htmlFor = id;
      label.textContent = `${role.job_role}, ${role.organisation}`;
      wrapper.append(input, " ", label);
      options.append(wrapper);
    }
    fieldset.hidden = false;
    say("Choose the role for this session, then Continue.");
    const first = options.querySelector("input:checked") || options.querySelector("input");
    if (first) first.focus();
    $("choose-role").onclick = async () => {
      const chosen = options.querySelector("input:checked");
      if (!chosen) {
        say("Choose a role first.", true);
        return;
      }
      try {
        // The role's id as the agent gave it (a string or a number), not the input's text.
        const role = roles.roles.find((r) => String(r.id) === chosen.value);
        await agent.selectRole({ role: role ? role.id : chosen.value, remember: false });
        fieldset.hidden = true;
        await postTicket();
      } catch (error) {
        say(explain(error), true);
      }
    };
  };
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      if (!agent || agent.isClosed) {
        say("Connecting to the identity agent…");
        agent = await connectAgent();
      }
      const status = await agent.status();
      if (!status.session || status.session.state !== "signed_in") {
        say("Enter your passcode in the identity agent's prompt.");
        await agent.login();
      }
      const roles = await agent.roles();
      if (!roles.selected && roles.roles && roles.roles.length > 1) {
        await chooseRole(roles);
        return;
      }
      await postTicket();
    } catch (error) {
      say(explain(error), true);
    } finally {
      button.disabled = false;
    }
  });
}

/** Shows an operation's steps as they happen, and its end. */
function operationView() {
  const progress = $("progress");
  const result = $("result");
  const error = $("error");
  const back = $("back");
  const seen = new Set();
  return {
    reset() {
      progress.replaceChildren();
      seen.clear();
      show(result, "");
      show(error, "");
    },
    step(operation) {
      if (!operation || seen.has(operation.step)) return;
      seen.add(operation.step);
      const item = document.createElement("li");
      item.textContent = operation.message || operation.step;
      progress.append(item);
    },
    done(operation, words) {
      this.step(operation);
      show(result, words);
      back.hidden = false;
    },
    failed(err) {
      show(error, explain(err));
      back.hidden = false;
    },
  };
}

/** Runs `work` on a fresh agent connection, following its operation's progress events. */
async function runOperation(view, kind, work) {
  const agent = await connectAgent();
  const off = agent.on("operation_progress", (data) => {
    if (data && data.operation && data.operation.kind === kind) view.step(data.operation);
  });
  try {
    return await work(agent);
  } finally {
    off();
    agent.close();
  }
}

/** Renew Certificate: the agent renews the signed-in card, step by step. */
function renewPage() {
  const button = $("renew");
  const view = operationView();
  button.addEventListener("click", async () => {
    button.disabled = true;
    view.reset();
    view.step({ step: "asking", message: "Asking the identity agent to renew your smartcard…" });
    try {
      const operation = await runOperation(view, "renew", (agent) => agent.renew());
      view.done(
        operation,
        `${operation.message || "Renewed"}. Your smartcard is renewed and you are still signed in. Your profile shows the new expiry date.`,
      );
      $("back").focus();
    } catch (error) {
      view.failed(error);
      button.disabled = false;
    }
  });
}

/** What the repair page says when the only card it finds is the officer's own. */
const OWN_CARD_READ =
  "That is your own smartcard. Insert the card holder's smartcard into the second reader, then choose Read the card.";

/** Repair Smartcard: read the holder's card in the second reader, confirm, repair. */
function repairPage() {
  const read = $("read-card");
  const repair = $("repair");
  const table = $("repair-card");
  const view = operationView();
  const officerCard = $("repair-work").dataset.officerCard;
  let target = null;
  read.addEventListener("click", async () => {
    read.disabled = true;
    repair.disabled = true;
    view.reset();
    target = null;
    try {
      const agent = await connectAgent();
      try {
        const details = await agent.cardDetails();
        if (details.serial === officerCard) {
          show($("error"), OWN_CARD_READ);
          return;
        }
        const status = await agent.status();
        const slot = (status.readers || []).find(
          (r) => r.card && r.card.serial && r.card.serial.toUpperCase() === details.serial.toUpperCase(),
        );
        target = { reader: slot ? slot.name : undefined, serial: details.serial };
        for (const cell of table.querySelectorAll("[data-field]")) {
          const value = details[cell.dataset.field];
          const field = cell.dataset.field;
          if (field === "cancelled_on") cell.textContent = value ? displayDate(value) : "Active";
          else if (field === "certs_expire") cell.textContent = displayDate(value) + (details.expired ? " (expired)" : "");
          else if (field.endsWith("_on")) cell.textContent = displayDate(value);
          else cell.textContent = value || "Not known";
        }
        table.hidden = false;
        repair.disabled = false;
        show($("result"), `Check these details with ${details.holder_name || "the card holder"}, then choose Repair Smartcard.`);
        repair.focus();
      } finally {
        agent.close();
      }
    } catch (error) {
      view.failed(error);
    } finally {
      read.disabled = false;
    }
  });
  repair.addEventListener("click", async () => {
    if (!target) return;
    repair.disabled = true;
    read.disabled = true;
    view.reset();
    view.step({ step: "asking", message: "The card holder chooses their new passcode in the identity agent's prompt…" });
    try {
      const operation = await runOperation(view, "repair", (agent) => agent.repair(target));
      view.done(operation, `${operation.message || "Repaired"}. The smartcard is repaired and its holder's new passcode is set. They can sign in with it now.`);
      $("back").focus();
    } catch (error) {
      view.failed(error);
      repair.disabled = false;
    } finally {
      read.disabled = false;
    }
  });
}

const PAGES = { "sign-in": signInPage, renew: renewPage, repair: repairPage };

if (typeof document !== "undefined") {
  const page = PAGES[document.body.dataset.page];
  if (page) page();
}
