// One finished call: what happened, what was said, the timeline picture, the recording.
import { duration, el, getJSON, show, when } from "./common.js";

const callSid = decodeURIComponent(location.pathname.split("/").pop());
const api = `api/calls/${encodeURIComponent(callSid)}`;

const FIGURES = {
  first_audio_s: "First audio (s)",
  model_connect_s: "Model connected (s)",
  barge_ins: "Barge-ins",
  truncations: "Replies cut",
  frames_in: "Frames in",
  frames_out: "Frames out",
  reconnects: "Model reconnects",
  rollovers: "Session rollovers",
  dropped_audio_bytes: "Agent audio dropped (bytes)",
};

function facts(dl, pairs) {
  dl.replaceChildren(...pairs.map(([label, value, cls]) =>
    el("div", { cls }, el("dt", { text: label }), el("dd", { text: show(value) }))));
}

function details(row, skip) {
  return Object.entries(row)
    .filter(([key]) => !skip.includes(key))
    .map(([key, value]) => `${key}=${typeof value === "object" && value !== null ? JSON.stringify(value) : value}`)
    .join("  ");
}

function transcriptItem(item) {
  if (item.type === "message") {
    const role = item.role === "user" ? "caller" : item.role === "assistant" ? "agent" : item.role || "?";
    return el("li", { cls: `turn ${role}` },
      el("span", { text: role === "caller" ? "Caller" : role === "agent" ? "Agent" : role, cls: "who" }),
      el("span", { text: item.text || (item.status === "in_progress" ? "…" : "(no transcript)"), cls: "said" }));
  }
  if (item.type === "function_call") {
    const text = `${item.name || "?"}(${item.arguments || ""})` + (item.output != null ? ` → ${item.output}` : "");
    return el("li", { cls: "turn tool" }, el("span", { text: "Tool", cls: "who" }), el("code", { text, cls: "said" }));
  }
  if (item.type === "call_event") {
    return el("li", { cls: "turn control" }, el("span", { text: "Call", cls: "who" }),
      el("span", { text: `${item.event}  ${details(item, ["type", "event"])}`.trim(), cls: "said" }));
  }
  return el("li", { cls: "turn other" }, el("span", { text: show(item.type), cls: "who" }),
    el("span", { text: details(item, ["type"]), cls: "said" }));
}

function render(call) {
  document.title = `Call ${call.call_sid}: gateway console`;
  document.getElementById("title").textContent = `${show(call.from)} → ${show(call.to)}`;
  facts(document.getElementById("summary"), [
    ["Call SID", call.call_sid, "wide"],
    ["Direction", call.direction],
    ["Agent", call.agent],
    ["Started", when(call.started_at)],
    ["Duration", duration(call.duration_s)],
    ["Ended", call.end_reason],
  ]);
  const figures = call.figures || {};
  facts(document.getElementById("figures"), Object.entries(FIGURES).map(([key, label]) => [label, figures[key]]));

  const transcript = (call.transcript || []).map(transcriptItem);
  document.getElementById("transcript").replaceChildren(...transcript);
  document.getElementById("transcript-empty").hidden = transcript.length > 0;

  const tools = call.tool_calls || [];
  document.getElementById("tools-section").hidden = tools.length === 0;
  document.querySelector("#tools tbody").replaceChildren(...tools.map((t) => el("tr", {},
    el("td", { text: show(t.t), cls: "num" }), el("td", { text: show(t.tool) }),
    el("td", {}, el("code", { text: show(t.arguments) })), el("td", {}, el("code", { text: show(t.output) })))));

  document.querySelector("#events tbody").replaceChildren(...(call.events || []).map((e) => el("tr", { cls: `event ${e.event}` },
    el("td", { text: show(e.t), cls: "num" }), el("td", { text: show(e.event) }),
    el("td", { text: details(e, ["t", "event"]) }))));

  const image = document.getElementById("timeline");
  image.addEventListener("error", () => {
    image.hidden = true;
    document.getElementById("timeline-missing").hidden = false;
  }, { once: true });
  image.src = `${api}/timeline.png`;

  if (call.recording) {
    document.getElementById("recording").src = `${api}/recording.wav`;
    document.getElementById("recording-section").hidden = false;
  }
  document.getElementById("call").hidden = false;
}

try {
  render(await getJSON(api));
} catch (error) {
  document.getElementById("error").textContent = error.status === 404 ? `No call ${callSid} here: ${error.message}.` : `The call could not be read: ${error.message}`;
}
