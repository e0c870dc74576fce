// The hintbus BLF board: the broker's table over /api/ws (docs/http.md), one section per
// server with its lamps, presence and queue members.
//
// Everything a peer sends (names, presence messages, member names, reasons) is set with
// textContent or as attribute values, never as markup: it comes from other servers.
// With thousands of lamps a change touches only its own element (found through a Map);
// sections are built again only for a table or a filter change.
"use strict";

(() => {
  const SILENCE_MS = 45000; // the broker says something (at least a ping) every 20 s
  const BACKOFF_MIN_MS = 1000;
  const BACKOFF_MAX_MS = 15000;

  // Wire device state -> [category (colour and shape), words for the lamp].
  const DEVICE = {
    NOT_INUSE: ["idle", "idle"],
    INUSE: ["inuse", "in use"],
    BUSY: ["busy", "busy"],
    RINGING: ["ringing", "ringing"],
    RINGINUSE: ["ringing", "in use, ringing"],
    ONHOLD: ["hold", "on hold"],
    UNAVAILABLE: ["unavailable", "unavailable"],
    UNKNOWN: ["unknown", "unknown"],
    INVALID: ["unknown", "invalid"],
  };
  const CATEGORIES = ["inuse", "busy", "ringing", "hold", "idle", "unavailable", "unknown"];
  const CATEGORY_WORDS = {
    inuse: "in use", busy: "busy", ringing: "ringing", hold: "on hold",
    idle: "idle", unavailable: "unavailable", unknown: "unknown",
  };
  const PRESENCE = {
    not_set: "not set", unavailable: "unavailable", available: "available", away: "away",
    xa: "extended away", chat: "chat", dnd: "do not disturb",
  };
  const QUEUE_EVENT = {
    called: "ringing", connect: "on a call", complete: "call ended",
    ring_no_answer: "no answer", dump: "hung up", pause: "pause",
  };
  const SERVER_STATUS = { live: "online", lost: "agent lost", ami_down: "Asterisk unreachable" };

  const collator = new Intl.Collator(undefined, { numeric: true, sensitivity: "base" });
  const byName = (a, b) => collator.compare(a, b) || (a < b ? -1 : a > b ? 1 : 0);

  const $ = (id) => document.getElementById(id);
  const main = $("servers");
  const banner = $("banner");
  const bannerText = $("banner-text");
  const connText = $("conn-text");
  const serverSelect = $("server");
  const filterInput = $("filter");

  /** Key of a table entry: origin, kind, name (names hold no control characters). */
  const keyOf = (e) => `${e.origin}\n${e.kind}\n${e.name}`;
  const memberKeyOf = (m) => `${m.origin}\n${m.queue}\n${m.interface}`;

  // What the board holds.
  const entries = new Map(); // key -> {origin, kind, name, state, subtype, message, version}
  const removedAt = new Map(); // key -> version of its removal (an older change stays ignored)
  const members = new Map(); // member key -> {origin, queue, interface, member, event, paused, reason, at_ms}
  const servers = new Map(); // origin -> {status, counts: {category: n}, lamps}
  // What is on the page (only what passes the filter).
  const lampEls = new Map(); // key -> element (devices and presence)
  const memberEls = new Map(); // member key -> element
  const sections = new Map(); // origin -> {root, badge, summary, lamps, presence, members}

  // ---- the URL's hash: token and filter, so that a wall screen's link keeps them --------

  function readHash() {
    const out = {};
    for (const part of location.hash.replace(/^#/, "").split("&")) {
      if (!part) continue;
      const i = part.indexOf("=");
      const k = i < 0 ? part : part.slice(0, i);
      const v = i < 0 ? "" : part.slice(i + 1);
      // decodeURIComponent, not URLSearchParams: a '+' in a token stays a '+'.
      try {
        out[decodeURIComponent(k)] = decodeURIComponent(v);
      } catch (_) {
        out[k] = v;
      }
    }
    return out;
  }

  let hash = readHash();
  let token = hash.token || "";
  // `text` as typed (kept in the hash), `q` for matching.
  const filter = { server: hash.server || "", text: hash.q || "", q: (hash.q || "").toLowerCase() };

  function writeHash() {
    const parts = [];
    if (token) parts.push("token=" + encodeURIComponent(token));
    if (filter.server) parts.push("server=" + encodeURIComponent(filter.server));
    if (filter.text) parts.push("q=" + encodeURIComponent(filter.text));
    const url = parts.length ? "#" + parts.join("&") : location.pathname + location.search;
    history.replaceState(null, "", url);
  }

  // ---- small DOM helpers -----------------------------------------------------------------

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function clock(ms) {
    const d = new Date(ms);
    const p = (n) => String(n).padStart(2, "0");
    return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
  }

  // ---- servers ---------------------------------------------------------------------------

  function server(origin) {
    let s = servers.get(origin);
    if (!s) {
      s = { status: "", counts: {}, lamps: 0 };
      servers.set(origin, s);
      if (building) return s;
      syncServerOptions();
      if (rendered && passesServer(origin) && !sections.has(origin)) insertSection(origin);
    }
    return s;
  }

  /** The server select: every server seen, and the one the filter names even if unseen. */
  function syncServerOptions() {
    const names = [...servers.keys()];
    if (filter.server && !servers.has(filter.server)) names.push(filter.server);
    names.sort(byName);
    const have = [...serverSelect.options].slice(1).map((o) => o.value);
    if (have.length !== names.length || have.some((n, i) => n !== names[i])) {
      while (serverSelect.options.length > 1) serverSelect.remove(1);
      for (const n of names) {
        const o = el("option", "", n);
        o.value = n;
        serverSelect.appendChild(o);
      }
    }
    serverSelect.value = filter.server;
  }

  function setStatus(origin, status) {
    const s = server(origin);
    s.status = status;
    const sec = sections.get(origin);
    if (sec) paintStatus(sec, s);
  }

  function paintStatus(sec, s) {
    sec.root.dataset.status = s.status || "unknown";
    sec.badge.textContent = SERVER_STATUS[s.status] || "";
    sec.badge.hidden = !s.status;
  }

  function count(origin, state, delta) {
    const s = server(origin);
    const cat = (DEVICE[state] || DEVICE.UNKNOWN)[0];
    s.counts[cat] = (s.counts[cat] || 0) + delta;
    s.lamps += delta;
    dirtySummaries.add(origin);
  }

  const dirtySummaries = new Set();

  function paintSummaries() {
    for (const origin of dirtySummaries) {
      const sec = sections.get(origin);
      const s = servers.get(origin);
      if (sec && s) paintSummary(sec, s);
    }
    dirtySummaries.clear();
  }

  function paintSummary(sec, s) {
    const box = sec.summary;
    box.textContent = "";
    box.appendChild(el("span", "total", `${s.lamps} lamp${s.lamps === 1 ? "" : "s"}`));
    for (const cat of CATEGORIES) {
      const n = s.counts[cat] || 0;
      if (!n || cat === "idle") continue;
      const chip = el("span", `chip s-${cat}`);
      chip.appendChild(el("span", `dot s-${cat}`));
      chip.appendChild(document.createTextNode(`${n} ${CATEGORY_WORDS[cat]}`));
      box.appendChild(chip);
    }
  }

  // ---- filter ----------------------------------------------------------------------------

  const passesServer = (origin) => !filter.server || filter.server === origin;
  const passesName = (...names) => !filter.q || names.some((n) => n && n.toLowerCase().includes(filter.q));
  const showsEntry = (e) => passesServer(e.origin) && passesName(e.name);
  const showsMember = (m) => passesServer(m.origin) && passesName(m.member, m.interface, m.queue);

  // ---- elements --------------------------------------------------------------------------

  function lampEl(e) {
    const li = el("li", "lamp");
    li.dataset.origin = e.origin;
    li.dataset.name = e.name;
    // The lamp itself is the tile's ::before (one element fewer per lamp, for 10,000 of them).
    li.appendChild(el("span", "name", e.name));
    li.appendChild(el("span", "state"));
    paintLamp(li, e);
    return li;
  }

  function paintLamp(li, e) {
    const [cat, words] = DEVICE[e.state] || ["unknown", String(e.state).toLowerCase()];
    li.dataset.state = e.state;
    li.className = `lamp s-${cat}`;
    li.lastChild.textContent = words;
    li.title = `${e.name} on ${e.origin}: ${words}`;
  }

  // A mailbox is a lamp too: lit (a square, so that it is told from a phone without colour)
  // while new messages wait, with its counts in words.
  function mailboxEl(e) {
    const li = el("li", "lamp");
    li.dataset.origin = e.origin;
    li.dataset.name = e.name;
    li.dataset.kind = "mailbox";
    li.appendChild(el("span", "name", e.name));
    li.appendChild(el("span", "state"));
    paintMailbox(li, e);
    return li;
  }

  function paintMailbox(li, e) {
    const fresh = (e.new || 0) + (e.urgent || 0);
    const words = `${fresh} new, ${e.old || 0} old`;
    li.dataset.state = e.state;
    li.className = `lamp mwi ${e.state === "waiting" ? "s-mwi-on" : "s-mwi-off"}`;
    li.lastChild.textContent = words;
    li.title = `voicemail ${e.name} on ${e.origin}: ${words}`;
  }

  /** The element of an entry of any kind, and its repaint. */
  const itemOf = (e) => (e.kind === "presence" ? presenceEl(e) : e.kind === "mailbox" ? mailboxEl(e) : lampEl(e));
  function repaint(item, e) {
    if (e.kind === "presence") paintPresence(item, e);
    else if (e.kind === "mailbox") paintMailbox(item, e);
    else paintLamp(item, e);
  }

  function presenceEl(e) {
    const li = el("li", "pres");
    li.dataset.origin = e.origin;
    li.dataset.name = e.name;
    const head = el("div", "pres-head");
    head.appendChild(el("span", "name", e.name));
    head.appendChild(el("span", "pstate"));
    li.appendChild(head);
    li.appendChild(el("div", "msg"));
    paintPresence(li, e);
    return li;
  }

  function paintPresence(li, e) {
    li.dataset.presence = e.state;
    li.className = `pres p-${PRESENCE[e.state] ? e.state : "not_set"}`;
    const words = PRESENCE[e.state] || e.state;
    li.firstChild.lastChild.textContent = e.subtype ? `${words} · ${e.subtype}` : words;
    const msg = li.lastChild;
    msg.textContent = e.message || "";
    msg.hidden = !e.message;
  }

  function memberEl(m) {
    const li = el("li", "member");
    li.dataset.origin = m.origin;
    li.dataset.queue = m.queue;
    li.dataset.member = m.interface;
    li.appendChild(el("span", "mname"));
    li.appendChild(el("span", "queue", m.queue));
    li.appendChild(el("span", "event"));
    li.appendChild(el("span", "paused"));
    li.appendChild(el("span", "when"));
    paintMember(li, m);
    return li;
  }

  function paintMember(li, m) {
    const [name, , ev, paused, when] = li.children;
    name.textContent = m.member || m.interface;
    if (m.member && m.member !== m.interface) name.appendChild(el("span", "iface", m.interface));
    name.title = m.interface;
    li.dataset.name = m.member || m.interface;
    li.dataset.event = m.event;
    li.dataset.paused = m.paused ? "1" : "0";
    li.className = `member e-${QUEUE_EVENT[m.event] ? m.event : "other"}${m.paused ? " is-paused" : ""}`;
    const pause = m.event === "pause";
    ev.textContent = pause ? (m.paused ? "paused" : "unpaused") : QUEUE_EVENT[m.event] || m.event;
    // After a pause event the event says "paused" already: only the reason is left to say.
    if (!m.paused) paused.textContent = "";
    else if (pause) paused.textContent = m.reason ? `reason: ${m.reason}` : "";
    else paused.textContent = m.reason ? `paused: ${m.reason}` : "paused";
    when.textContent = m.at_ms ? clock(m.at_ms) : "";
  }

  /** Inserts `item` among `parent`'s children, kept in order by `cmp` (binary search). */
  function insertSorted(parent, item, cmp) {
    const kids = parent.children;
    let lo = 0;
    let hi = kids.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cmp(kids[mid], item) <= 0) lo = mid + 1;
      else hi = mid;
    }
    parent.insertBefore(item, kids[lo] || null);
  }

  const cmpByName = (a, b) => byName(a.dataset.name, b.dataset.name);
  const cmpMember = (a, b) => byName(a.dataset.queue, b.dataset.queue) || byName(a.dataset.name, b.dataset.name);

  // ---- sections --------------------------------------------------------------------------

  function sectionEl(origin) {
    const root = el("section", "server");
    root.dataset.origin = origin;
    const head = el("header", "server-head");
    head.appendChild(el("h2", "", origin));
    const badge = el("span", "badge");
    head.appendChild(badge);
    const summary = el("div", "summary");
    head.appendChild(summary);
    root.appendChild(head);
    // Each list in a block of its own, hidden while the list is empty (CSS).
    const block = (cls, title) => {
      const b = el("div", "block");
      if (title) b.appendChild(el("h3", "", title));
      const list = el("ul", cls);
      list.setAttribute("aria-label", `${title || "lamps"} on ${origin}`);
      b.appendChild(list);
      root.appendChild(b);
      return list;
    };
    const lamps = block("lamps", "");
    const presence = block("presences", "presence");
    const mem = block("members", "queue members");
    root.appendChild(el("p", "empty", filter.q ? "nothing matches the filter" : "nothing yet"));
    const sec = { root, badge, summary, lamps, presence, members: mem };
    const s = servers.get(origin);
    if (s) {
      paintStatus(sec, s);
      paintSummary(sec, s);
    }
    return sec;
  }

  function insertSection(origin) {
    const sec = sectionEl(origin);
    sections.set(origin, sec);
    let before = null;
    for (const child of main.children) {
      if (byName(child.dataset.origin, origin) > 0) {
        before = child;
        break;
      }
    }
    main.insertBefore(sec.root, before);
    return sec;
  }

  let rendered = false;

  /** Builds every section again (a table, or a filter change). */
  function render() {
    rendered = true;
    lampEls.clear();
    memberEls.clear();
    sections.clear();
    const origins = [...servers.keys()].filter(passesServer).sort(byName);
    const frag = document.createDocumentFragment();
    for (const origin of origins) {
      const sec = sectionEl(origin);
      sections.set(origin, sec);
      frag.appendChild(sec.root);
    }
    const shown = [...entries.entries()].filter(([, e]) => showsEntry(e));
    shown.sort(([, a], [, b]) => byName(a.name, b.name));
    // Each list filled off the page, then attached once.
    const lists = new Map();
    const listOf = (origin, which) => {
      const id = origin + "\n" + which;
      let l = lists.get(id);
      if (!l) {
        l = document.createDocumentFragment();
        lists.set(id, l);
      }
      return l;
    };
    for (const [key, e] of shown) {
      const item = itemOf(e);
      lampEls.set(key, item);
      listOf(e.origin, e.kind).appendChild(item);
    }
    const ms = [...members.entries()].filter(([, m]) => showsMember(m));
    ms.sort(([, a], [, b]) => byName(a.queue, b.queue) || byName(a.member || a.interface, b.member || b.interface));
    for (const [key, m] of ms) {
      const item = memberEl(m);
      memberEls.set(key, item);
      listOf(m.origin, "member").appendChild(item);
    }
    for (const [id, list] of lists) {
      const [origin, which] = id.split("\n");
      const sec = sections.get(origin);
      if (!sec) continue;
      (which === "presence" ? sec.presence : which === "member" ? sec.members : sec.lamps).appendChild(list);
    }
    main.replaceChildren(frag);
    main.dataset.empty = servers.size ? "0" : "1";
  }

  // ---- applying what the broker says -----------------------------------------------------

  let version = 0;
  /** While a table is applied: no section or option is made one server at a time. */
  let building = false;

  function applyTable(m) {
    entries.clear();
    removedAt.clear();
    members.clear();
    const statuses = new Map([...servers].map(([o, s]) => [o, s.status]));
    servers.clear();
    building = true;
    for (const e of m.entries || []) {
      if (e.state == null) continue;
      entries.set(keyOf(e), e);
      server(e.origin);
      if (e.kind === "device") count(e.origin, e.state, 1);
    }
    for (const q of m.queue || []) {
      members.set(memberKeyOf(q), q);
      server(q.origin);
    }
    // Statuses from before stay until /api/status says otherwise.
    for (const [o, st] of statuses) if (servers.has(o)) servers.get(o).status = st;
    building = false;
    dirtySummaries.clear();
    syncServerOptions();
    render();
    setVersion(m.version || 0);
    fetchStatus();
  }

  let summaryFrame = 0;

  function applyChanges(m) {
    for (const e of m.entries || []) applyEntry(e);
    // Counts are painted once a frame, however many changes came in it.
    if (!summaryFrame) {
      summaryFrame = requestAnimationFrame(() => {
        summaryFrame = 0;
        paintSummaries();
      });
    }
    setVersion(Math.max(version, m.version || 0));
  }

  function applyEntry(e) {
    const key = keyOf(e);
    const held = entries.get(key);
    const v = e.version || 0;
    if (v <= (held ? held.version || 0 : removedAt.get(key) || 0)) return;
    let item = lampEls.get(key);
    if (held && held.kind === "device") count(held.origin, held.state, -1);
    if (e.state == null) {
      entries.delete(key);
      removedAt.set(key, v);
      if (item) {
        item.remove();
        lampEls.delete(key);
      }
      return;
    }
    removedAt.delete(key);
    entries.set(key, e);
    if (e.kind === "device") count(e.origin, e.state, 1);
    else server(e.origin);
    if (item) {
      repaint(item, e);
      return;
    }
    if (!rendered || !showsEntry(e)) return;
    const sec = sections.get(e.origin) || insertSection(e.origin);
    item = itemOf(e);
    lampEls.set(key, item);
    insertSorted(e.kind === "presence" ? sec.presence : sec.lamps, item, cmpByName);
  }

  function applyQueue(m) {
    const now = Date.now();
    for (const ev of m.events || []) {
      const key = memberKeyOf(ev);
      const before = members.get(key);
      const pauseSaid = ev.paused !== undefined && ev.paused !== null;
      const mem = {
        origin: ev.origin,
        queue: ev.queue,
        interface: ev.interface,
        member: ev.member || (before ? before.member : ""),
        event: ev.event,
        // A pause event says paused or not; any other event leaves it as it was.
        paused: pauseSaid ? !!ev.paused : before ? before.paused : false,
        reason: pauseSaid ? ev.reason || "" : before ? before.reason : "",
        at_ms: now,
      };
      members.set(key, mem);
      server(mem.origin);
      let item = memberEls.get(key);
      if (item) {
        paintMember(item, mem);
        continue;
      }
      if (!rendered || !showsMember(mem)) continue;
      const sec = sections.get(mem.origin) || insertSection(mem.origin);
      item = memberEl(mem);
      memberEls.set(key, item);
      insertSorted(sec.members, item, cmpMember);
    }
  }

  /** Servers told about since the last table: /api/status must not undo what they said. */
  let statusTold = new Set();
  let statusAsked = 0;

  function applyAgent(m) {
    if (!m.server) return;
    const status = { joined: "live", ami_up: "live", lost: "lost", ami_down: "ami_down" }[m.event];
    if (!status) return;
    statusTold.add(m.server);
    setStatus(m.server, status);
  }

  /** Who is connected now (agent events only say what changes). */
  function fetchStatus() {
    const asked = ++statusAsked;
    statusTold = new Set();
    const headers = token ? { Authorization: "Bearer " + token } : {};
    fetch("api/status", { headers, cache: "no-store" })
      .then((r) => (r.ok ? r.json() : null))
      .then((s) => {
        if (!s || asked !== statusAsked) return;
        for (const a of s.agents || []) {
          if (a.server && !statusTold.has(a.server)) setStatus(a.server, a.ami_connected === false ? "ami_down" : "live");
        }
        for (const l of s.lost || []) {
          if (l.server && !statusTold.has(l.server)) setStatus(l.server, "lost");
        }
      })
      .catch(() => {});
  }

  function setVersion(v) {
    version = v;
    document.body.dataset.version = String(v);
  }

  // ---- the socket, and what the banner says about it -------------------------------------

  let socket = null;
  let live = false;
  let backoff = BACKOFF_MIN_MS;
  let lastHeard = 0;
  let retryAt = 0;
  let retryTimer = 0;
  let lostAt = 0;

  function wsUrl() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const base = location.pathname.replace(/[^/]*$/, "");
    // The broker compares the query's token as it is sent: only what a query cannot hold
    // is percent-encoded.
    const q = token ? "?token=" + token.replace(/[^A-Za-z0-9\-._~!$'()*+,;=:@/]/g, encodeURIComponent) : "";
    return `${scheme}//${location.host}${base}api/ws${q}`;
  }

  function connect() {
    clearTimeout(retryTimer);
    retryAt = 0;
    lastHeard = Date.now();
    let ws;
    try {
      ws = new WebSocket(wsUrl());
    } catch (_) {
      feedLost();
      return;
    }
    socket = ws;
    paintConn();
    ws.onmessage = (ev) => {
      if (ws !== socket) return;
      lastHeard = Date.now();
      let m;
      try {
        m = JSON.parse(ev.data);
      } catch (_) {
        return;
      }
      switch (m.type) {
        case "table":
          applyTable(m);
          setLive(true);
          break;
        case "changes":
          if (live) applyChanges(m);
          break;
        case "queue":
          if (live) applyQueue(m);
          break;
        case "agent":
          if (live) applyAgent(m);
          break;
        default:
          break; // "ping", and whatever a newer broker adds
      }
    };
    ws.onclose = () => {
      if (ws === socket) feedLost();
    };
  }

  function feedLost() {
    const ws = socket;
    socket = null;
    if (ws) {
      ws.onclose = null;
      try {
        ws.close();
      } catch (_) {
        // already closed
      }
    }
    if (live || !lostAt) lostAt = Date.now();
    setLive(false);
    retryAt = Date.now() + backoff;
    retryTimer = setTimeout(connect, backoff);
    backoff = Math.min(backoff * 2, BACKOFF_MAX_MS);
    paintConn();
  }

  function setLive(on) {
    live = on;
    if (on) {
      backoff = BACKOFF_MIN_MS;
      lostAt = 0;
      document.body.dataset.live = "1";
    } else {
      delete document.body.dataset.live;
    }
    paintConn();
  }

  function paintConn() {
    const conn = $("conn");
    if (live) {
      conn.dataset.state = "live";
      connText.textContent = `live · ${entries.size} entr${entries.size === 1 ? "y" : "ies"}`;
      banner.hidden = true;
      document.title = "hintbus board";
      return;
    }
    conn.dataset.state = lostAt ? "lost" : "connecting";
    connText.textContent = lostAt ? "offline" : "connecting…";
    if (!lostAt) return;
    const secs = retryAt ? Math.max(0, Math.ceil((retryAt - Date.now()) / 1000)) : 0;
    bannerText.textContent =
      `No updates since ${clock(lostAt)}; what is shown may be out of date. ` +
      (secs > 0 ? `Reconnecting in ${secs} s.` : "Reconnecting…");
    banner.hidden = false;
    document.title = "⚠ feed lost · hintbus board";
  }

  // One ticker: the silence watchdog and the banner's countdown.
  setInterval(() => {
    if (socket && Date.now() - lastHeard > SILENCE_MS) feedLost();
    paintConn();
  }, 1000);

  // ---- controls --------------------------------------------------------------------------

  function setFilter(server, text) {
    if (server === filter.server && text === filter.text) return;
    filter.server = server;
    filter.text = text;
    filter.q = text.toLowerCase();
    writeHash();
    syncServerOptions();
    if (rendered) render();
  }

  serverSelect.addEventListener("change", () => setFilter(serverSelect.value, filter.q));
  let typing = 0;
  const typed = () => {
    clearTimeout(typing);
    typing = setTimeout(() => setFilter(filter.server, filterInput.value.trim()), 120);
  };
  filterInput.addEventListener("input", typed);
  filterInput.addEventListener("change", typed);
  window.addEventListener("hashchange", () => {
    hash = readHash();
    const t = hash.token || "";
    filterInput.value = hash.q || "";
    setFilter(hash.server || "", hash.q || "");
    if (t !== token) {
      token = t;
      if (socket) feedLost();
    }
  });

  filterInput.value = hash.q || "";
  syncServerOptions();
  connect();
})();
