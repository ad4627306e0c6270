// Shared by the console's pages. Everything that comes from a call (numbers, names, words)
// goes into the page as text (textContent), never as HTML: a caller chooses what they say
// and, on some trunks, what number they call from.

/** An element with text, a class and attributes; children appended. */
export function el(tag, { text, cls, attrs } = {}, ...children) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
  for (const child of children) node.append(child);
  return node;
}

/** GET JSON from the console's API (relative to the console). A lapsed login goes back to
 *  the login form; any other failure throws, with the server's message if it sent one. */
export async function getJSON(path) {
  const response = await fetch(path, { cache: "no-store", credentials: "same-origin" });
  if (response.status === 401) {
    toLogin();
    throw new Error("logged out");
  }
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try {
      const body = await response.json();
      if (body && body.error) message = body.error;
    } catch (_) { /* not JSON: the status says it */ }
    const error = new Error(message);
    error.status = response.status;
    throw error;
  }
  return response.json();
}

export function toLogin() {
  const here = location.pathname.split("/console/")[1] || "";
  const next = /^calls\/[A-Za-z0-9_-]{1,64}$/.test(here) ? `?next=${encodeURIComponent(here)}` : "";
  location.assign(new URL(`login${next}`, document.baseURI));
}

/** Seconds as m:ss (h:mm:ss from an hour). */
export function duration(seconds) {
  if (typeof seconds !== "number" || !isFinite(seconds)) return "–";
  const total = Math.max(0, Math.floor(seconds));
  const h = Math.floor(total / 3600), m = Math.floor((total % 3600) / 60), s = total % 60;
  const mm = h ? String(m).padStart(2, "0") : String(m);
  return (h ? `${h}:` : "") + `${mm}:${String(s).padStart(2, "0")}`;
}

/** Unix seconds as a local date and time. */
export function when(unix) {
  if (typeof unix !== "number") return "–";
  return new Date(unix * 1000).toLocaleString(undefined, {
    year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit",
  });
}

/** A value for a table cell: "–" when missing; objects as compact JSON. */
export function show(value) {
  if (value === undefined || value === null || value === "") return "–";
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

/** A link to a call's page. */
export function callLink(callSid) {
  return el("a", { text: callSid, cls: "sid", attrs: { href: `calls/${encodeURIComponent(callSid)}` } });
}
