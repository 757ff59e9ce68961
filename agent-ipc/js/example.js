// The script of example.html: connects to the agent's bridge, shows its status and its events,
// and signs in on request.
import { IdentityAgent, AgentError } from "./identity-agent.js";

const base = document.querySelector('meta[name="identity-agent-url"]').content;
const message = document.getElementById("message");
const events = document.getElementById("events");
let agent = null;

async function connected() {
  if (!agent || agent.isClosed) {
    agent = await IdentityAgent.connect(base, { client: "example page" });
    agent.on("*", (data, event) => {
      const item = document.createElement("li");
      item.textContent = `${event.event} ${JSON.stringify(data)}`;
      events.append(item);
    });
    agent.closed.then((reason) => {
      message.textContent = `Connection ended: ${reason.message}`;
    });
  }
  return agent;
}

function failed(error) {
  message.textContent =
    error instanceof AgentError ? `${error.code}: ${error.message}` : String(error);
}

document.getElementById("status").addEventListener("click", async () => {
  try {
    const status = await (await connected()).status();
    const session = status.session;
    message.textContent = `Agent ${status.agent_version}; session ${session.state}` +
      (session.user ? ` (${session.user.name})` : "");
  } catch (error) {
    failed(error);
  }
});

document.getElementById("sign-in").addEventListener("click", async () => {
  try {
    message.textContent = "Enter your passcode in the agent's prompt…";
    const session = await (await connected()).login();
    message.textContent = `Signed in as ${session.user.name}`;
  } catch (error) {
    failed(error);
  }
});
