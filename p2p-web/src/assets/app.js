// The dashboard: talks to the client's API with the token from the URL's
// fragment (#token=...), kept in memory only. No framework, no build step.
"use strict";
const token = new URLSearchParams(location.hash.slice(1)).get("token") || "";
let lastEvent = 0;
let state = null;

const $ = (id) => document.getElementById(id);
const el = (tag, attrs = {}, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null) e.setAttribute(k, v);
  }
  for (const k of kids) e.append(k);
  return e;
};
const bytes = (n) => {
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return i === 0 ? `${n} B` : `${n.toFixed(1)} ${u[i]}`;
};
const secs = (s) => s < 60 ? `${s}s` : s < 3600 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`
  : `${Math.floor(s / 3600)}h${String(Math.floor(s % 3600 / 60)).padStart(2, "0")}m`;

function say(text, error = false) {
  const m = $("message");
  m.textContent = text;
  m.className = error ? "error" : "";
}

async function api(method, path, body) {
  const r = await fetch("/api/" + path, {
    method,
    headers: { "X-Token": token, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const j = await r.json();
  if (!r.ok || j.ok === false) throw new Error(j.error || r.statusText);
  return j;
}

async function action(name, ...args) {
  try {
    const j = await api("POST", name, { args });
    say(j.text);
    await refresh();
    return j;
  } catch (e) {
    say(`${name}: ${e.message}`, true);
  }
}

async function refresh() {
  try {
    state = await api("GET", "state");
    render();
  } catch (e) {
    say(`cannot read the state: ${e.message}`, true);
  }
}

function render() {
  const s = state;
  const t = s.tracker_status;
  const sync = !t ? "" : t.in_sync ? ` · trackers in sync (primary ${t.primary ?? "none"})`
    : ` · tracker catching up (primary ${t.primary ?? "none"})`;
  const where = `tracker ${s.tracker}${s.tracker_up ? "" : " (reconnecting)"}${sync}`;
  $("who").textContent = s.user ? `${s.user} on ${where}` : `not logged in · ${where}`;
  $("who").dataset.user = s.user || "";
  const lim = (r) => (r == null ? "off" : `${bytes(r)}/s`);
  const rates = s.rates
    ? ` · limits up ${lim(s.rates.up)}, down ${lim(s.rates.down)}, per peer up ${lim(s.rates.up_per_peer)}, down ${lim(s.rates.down_per_peer)}`
    : "";
  $("seeder").textContent = `seeder ${s.seeder} · trackers ${s.trackers.join(", ")} · served ${s.served.pieces} pieces (${bytes(s.served.bytes)})${rates}`;
  $("login-box").hidden = !!s.user;
  $("logout-btn").hidden = !s.user;
  for (const id of ["groups-box", "downloads-box", "shares-box"]) $(id).hidden = !s.user;
  renderGroups(s);
  renderDownloads(s);
  renderShares(s);
}

function renderGroups(s) {
  const box = $("groups");
  box.replaceChildren();
  if (s.view_error) box.append(el("p", { class: "muted" }, `tracker: ${s.view_error}`));
  if (s.groups.length === 0) box.append(el("p", { class: "muted" }, "no groups yet"));
  for (const g of s.groups) {
    const tags = [];
    if (g.owned) tags.push(el("span", { class: "tag" }, "owner"));
    else if (g.member) tags.push(el("span", { class: "tag" }, "member"));
    else if (g.pending) tags.push(el("span", { class: "tag" }, "request pending"));
    const head = el("h3", {}, g.name, ...tags,
      el("span", { class: "muted" }, ` · owner ${g.owner} · ${g.members} member(s) `));
    if (!g.member && !g.pending) head.append(el("button", { onclick: () => action("join_group", g.name) }, "Ask to join"));
    if (g.member) head.append(el("button", { onclick: () => action("leave_group", g.name) }, "Leave"));
    const div = el("div", { class: "group", "data-group": g.name }, head);
    if (g.member_list) {
      const m = el("div", { class: "members" }, el("b", {}, "Members: "));
      for (const u of g.member_list) {
        m.append(el("span", { class: "member", "data-user": u }, u, u === g.owner ? " (owner)" : ""), " ");
      }
      div.append(m);
    }
    if (g.requests && g.requests.length) {
      const r = el("div", { class: "requests" }, el("b", {}, "Join requests: "));
      for (const u of g.requests) {
        r.append(el("span", { class: "request", "data-user": u }, ` ${u} `,
          el("button", { class: "accept", onclick: () => action("accept_request", g.name, u) }, "Accept"),
          el("button", { class: "reject", onclick: () => action("reject_request", g.name, u) }, "Reject")));
      }
      div.append(r);
    }
    if (g.files) {
      if (g.files.length === 0) div.append(el("p", { class: "muted" }, "no files shared yet"));
      else {
        const t = el("table", {}, el("tr", {}, el("th", {}, "file"), el("th", {}, "size"), el("th", {}, "seeders"), el("th", {})));
        for (const f of g.files) {
          t.append(el("tr", { class: "file", "data-file": f.name },
            el("td", {}, f.name), el("td", {}, bytes(f.size)),
            el("td", {}, `${f.seeders}${f.partial ? ` (+${f.partial} partial)` : ""}`),
            el("td", {}, el("button", { class: "download", onclick: () => download(g.name, f.name) }, "Download"))));
        }
        div.append(t);
      }
    }
    box.append(div);
  }
}

function download(group, file) {
  action("download_file", group, file, $("dest").value || ".");
}

function renderDownloads(s) {
  const box = $("downloads");
  box.replaceChildren();
  if (s.downloads.length === 0) box.append(el("p", { class: "muted" }, "no downloads"));
  for (const d of s.downloads) {
    const pct = d.bytes_total ? Math.floor(d.bytes_done * 100 / d.bytes_total) : (d.state === "complete" ? 100 : 0);
    const facts = [d.state, `${pct}%`];
    if (d.pieces_total !== undefined) facts.push(`${d.pieces_done}/${d.pieces_total} pieces`);
    if (d.state === "downloading") {
      facts.push(`${bytes(d.rate_bps)}/s`);
      if (d.eta_secs !== null && d.eta_secs !== undefined) facts.push(`ETA ${secs(d.eta_secs)}`);
    }
    if (d.served && d.served.pieces) facts.push(`served ${d.served.pieces} pieces (${bytes(d.served.bytes)}) to others`);
    if (d.error) facts.push(`error: ${d.error}`);
    if (d.waiting) facts.push(d.waiting);
    const div = el("div", { class: "download", "data-dl": d.dl, "data-state": d.state },
      el("h3", {}, `[${d.group}] ${d.file}`),
      el("div", { class: "bar" }, el("div", { style: `width:${pct}%` })),
      el("div", {}, facts.join(" · ")));
    if (d.pieces) {
      const map = el("div", { class: "pieces", title: "piece map" });
      for (const c of d.pieces) map.append(el("span", { class: c === "1" ? "have" : "" }));
      div.append(map);
    }
    if (d.peers && d.peers.length) {
      const t = el("table", {}, el("tr", {}, el("th", {}, "peer"), el("th", {}, "address"), el("th", {}, "pieces"), el("th", {}, "rate"), el("th", {}, "in flight")));
      for (const p of d.peers) {
        t.append(el("tr", {}, el("td", {}, p.user + (p.connected ? "" : " (not connected)")), el("td", {}, p.addr),
          el("td", {}, String(p.pieces)), el("td", {}, p.rate_bps ? `${bytes(p.rate_bps)}/s` : "–"), el("td", {}, String(p.in_flight))));
      }
      div.append(t);
    }
    box.append(div);
  }
}

function renderShares(s) {
  const box = $("shares");
  box.replaceChildren();
  if (s.shares.length === 0) box.append(el("p", { class: "muted" }, "nothing shared from this client"));
  else {
    const t = el("table", {}, el("tr", {}, el("th", {}, "group"), el("th", {}, "file"), el("th", {}, "size"), el("th", {}, "served"), el("th", {}, "path"), el("th", {})));
    for (const sh of s.shares) {
      t.append(el("tr", {}, el("td", {}, sh.group), el("td", {}, sh.file), el("td", {}, bytes(sh.size)),
        el("td", {}, `${sh.served.pieces} pieces (${bytes(sh.served.bytes)})`), el("td", { class: "muted" }, sh.path || ""),
        el("td", {}, el("button", { onclick: () => action("stop_share", sh.group, sh.file) }, "Stop sharing"))));
    }
    box.append(t);
  }
  if (s.served.by_user.length) {
    box.append(el("p", {}, "Served: " + s.served.by_user.map((u) => `${u.user} ${u.pieces} pieces (${bytes(u.bytes)})`).join(", ")));
  }
}

// Long-poll the events; any event (or a gap) means: refetch the state.
async function pollEvents() {
  for (;;) {
    try {
      const j = await api("GET", `events?since=${lastEvent}&wait_ms=20000`);
      if (j.events.length) {
        for (const e of j.events) {
          if (e.type === "join_request") say(`${e.data.user} asks to join ${e.data.group}`);
          if (e.type === "download_complete") say(`download of [${e.data.group}] ${e.data.file} complete`);
          if (e.type === "download_failed") say(`download of [${e.data.group}] ${e.data.file} failed: ${e.data.error}`, true);
          if (e.type === "tracker_switched") say(`tracker ${e.data.from} unreachable; switched to ${e.data.to}`);
        }
        lastEvent = j.events[j.events.length - 1].id;
        $("events").textContent = `events: ${lastEvent}`;
        await refresh();
      }
    } catch (e) {
      say(`lost the client: ${e.message}; retrying`, true);
      await new Promise((r) => setTimeout(r, 2000));
    }
  }
}

$("login-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const pass = $("login-pass").value;
  $("login-pass").value = "";
  action("login", $("login-user").value, pass);
});
$("create-btn").addEventListener("click", () => {
  const pass = $("login-pass").value;
  action("create_user", $("login-user").value, pass);
});
$("group-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  action("create_group", $("group-name").value);
});
$("join-group-btn").addEventListener("click", () => action("join_group", $("group-name").value));
$("logout-btn").addEventListener("click", () => action("logout"));
$("rate-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  action("set_rate", $("rate-which").value, $("rate-up").value);
});
$("share-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  action("upload_file", $("share-group").value, $("share-path").value);
});

if (!token) say("no token in the address: open the URL the client printed at start", true);
refresh().then(pollEvents);
setInterval(refresh, 5000);
