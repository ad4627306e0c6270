// The calls page: the calls in progress, asked for every second, and the recent calls.
import { callLink, duration, el, getJSON, show, when } from "./common.js";

const LIVE_EVERY_MS = 1000;
const LIVE_EVERY_HIDDEN_MS = 5000; // a tab in the background asks less often
const RECENT_EVERY_MS = 15000;
const SPEAKING = { caller: "Caller", agent: "Agent" };

const liveBody = document.querySelector("#live-calls tbody");
const liveRows = new Map(); // stream SID -> { row, cells }

function speakingCell(td, who) {
  if (td.dataset.speaking === who) return;
  td.dataset.speaking = who;
  td.replaceChildren(who ? el("span", { text: SPEAKING[who] || who, cls: `badge ${who}` }) : el("span", { text: "–", cls: "quiet" }));
}

function liveRow(call) {
  const cells = {
    speaking: el("td", { cls: "speaking" }),
    from: el("td", { cls: "number" }),
    to: el("td", { cls: "number" }),
    direction: el("td"),
    agent: el("td"),
    duration: el("td", { cls: "num" }),
    sid: el("td", { cls: "sid", text: call.call_sid }),
  };
  const row = el("tr", { attrs: { "data-call-sid": call.call_sid, "data-stream-sid": call.stream_sid } }, ...Object.values(cells));
  return { row, cells };
}

function updateLive(calls) {
  const seen = new Set();
  let ended = false;
  for (const call of calls) {
    seen.add(call.stream_sid);
    let live = liveRows.get(call.stream_sid);
    if (!live) {
      live = liveRow(call);
      liveRows.set(call.stream_sid, live);
      liveBody.append(live.row);
    }
    const c = live.cells;
    c.from.textContent = show(call.from);
    c.to.textContent = show(call.to);
    c.direction.textContent = show(call.direction);
    c.agent.textContent = show(call.agent);
    c.duration.textContent = duration(call.duration_s);
    speakingCell(c.speaking, call.speaking || "");
    live.row.classList.toggle("talking", Boolean(call.speaking));
    if (call.instance) live.row.title = `on ${call.instance}`; // the instance holding its stream
  }
  for (const [sid, live] of liveRows) {
    if (!seen.has(sid)) {
      live.row.remove();
      liveRows.delete(sid);
      ended = true;
    }
  }
  document.getElementById("live-count").textContent = calls.length ? `(${calls.length})` : "";
  document.getElementById("live-empty").hidden = calls.length > 0;
  if (ended) {
    // The store writes a finished call a moment after it ends.
    refreshRecent();
    setTimeout(refreshRecent, 2000);
  }
}

async function pollLive() {
  const status = document.getElementById("live-status");
  try {
    const data = await getJSON("api/live");
    updateLive(data.calls);
    const missing = data.unreachable || [];
    // Instances that did not answer: their calls are not in the table.
    status.textContent = missing.length ? `${missing.length} instance(s) not answering: ${missing.join(", ")}` : "";
    status.classList.toggle("bad", missing.length > 0);
  } catch (error) {
    status.textContent = `not updating: ${error.message}`;
    status.classList.add("bad");
  } finally {
    setTimeout(pollLive, document.hidden ? LIVE_EVERY_HIDDEN_MS : LIVE_EVERY_MS);
  }
}

async function refreshRecent() {
  const error = document.getElementById("recent-error");
  let data;
  try {
    data = await getJSON("api/calls?limit=50");
  } catch (e) {
    error.textContent = `The recent calls could not be read: ${e.message}`;
    return;
  }
  error.textContent = data.error ? `${data.error}: showing this instance's recent calls.` : "";
  document.getElementById("recent-source").textContent = data.source === "memory" ? "(this instance, in memory)" : "";
  const rows = data.calls.map((call) => el("tr", { attrs: { "data-call-sid": call.call_sid } },
    el("td", { text: when(call.started_at) }),
    el("td", { text: show(call.from), cls: "number" }),
    el("td", { text: show(call.to), cls: "number" }),
    el("td", { text: show(call.direction) }),
    el("td", { text: show(call.agent) }),
    el("td", { text: duration(call.duration_s), cls: "num" }),
    el("td", { text: show(call.end_reason) }),
    el("td", {}, callLink(call.call_sid)),
  ));
  document.querySelector("#recent-calls tbody").replaceChildren(...rows);
  document.getElementById("recent-empty").hidden = rows.length > 0;
}

pollLive();
refreshRecent();
setInterval(refreshRecent, RECENT_EVERY_MS);
