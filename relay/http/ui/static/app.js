// relay's history page: plain JavaScript over /ui/api (the JSON of /history).
// Everything that comes from a payload, a target or a callback is put into the page as text
// (textContent, never innerHTML), and a target_url becomes a link only when it is http(s).
"use strict";

(() => {
  const FINAL = new Set(["success", "failure", "error"]);
  const POLL_LIST_MS = 2000;
  const POLL_RUNNING_MS = 1000;
  const POLL_FINISHED_MS = 10000;
  const PAGE = 50;
  const FILTERS = ["chain", "state", "repository", "tag"];
  const OVERVIEW_MS = 10000;
  const SVG = "http://www.w3.org/2000/svg";

  let csrf = null;
  let services = {};  // chain name -> its Docker Cloud service UUID
  let view = 0; // bumped on every navigation, so that answers for an old view are dropped
  let timer = null;
  let items = []; // the history rows shown, newest first
  let olderCursor = null;
  let loadedOlder = false;
  let lastDelivery = "";
  let payloadOpen = false;
  let overviewAt = 0; // when the overview was last read

  const $ = (id) => document.getElementById(id);

  function el(tag, attributes, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "class") node.className = value;
      else if (name.startsWith("data-")) node.setAttribute(name, String(value));
      else if (["title", "id", "type", "datetime", "colspan"].includes(name)) {
        node.setAttribute(name, String(value));
      } else throw new Error(`el(): attribute ${name} is not allowed`);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  // A link inside the UI (pathname only, built here from ids).
  function internal(path, ...children) {
    if (!/^\/ui(\/deliveries\/[0-9a-v]{26})?$/.test(path)) return el("span", {}, ...children);
    const a = el("a", {"data-link": ""}, ...children);
    a.href = path;
    return a;
  }

  function httpUrl(text) {
    if (typeof text !== "string") return null;
    try {
      const url = new URL(text);
      return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
    } catch (_) {
      return null;
    }
  }

  // A link to somewhere outside relay: only http(s), opened without opener or referrer.
  function external(url, label) {
    const safe = httpUrl(url);
    if (safe === null) return el("span", {class: "url"}, url || "");
    const a = el("a", {class: "external"}, label || url);
    a.href = safe;
    a.target = "_blank";
    a.rel = "noopener noreferrer";
    return a;
  }

  function badge(state, prefix) {
    const text = (state || "unknown").replace(/_/g, " ");
    return el("span", {class: `badge state-${cssState(state)}`, "data-state": state || ""},
              prefix ? `${prefix}: ${text}` : text);
  }

  function cssState(state) {
    return /^[a-z_]+$/.test(state || "") ? state : "unknown";
  }

  function when(iso) {
    if (!iso) return el("span", {class: "muted"}, "—");
    const date = new Date(iso);
    return el("time", {datetime: iso, title: iso}, date.toLocaleString());
  }

  function seconds(fromIso, toIso) {
    if (!fromIso || !toIso) return null;
    const ms = new Date(toIso) - new Date(fromIso);
    return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`;
  }

  // -- talking to relay -------------------------------------------------------------------

  class Unauthorized extends Error {}

  async function api(path, options = {}) {
    const headers = {Accept: "application/json", ...(options.headers || {})};
    if (options.method && options.method !== "GET") headers["X-Relay-CSRF"] = csrf || "";
    const response = await fetch(path, {credentials: "same-origin", cache: "no-store",
                                        ...options, headers});
    let body = null;
    try {
      body = await response.json();
    } catch (_) {
      body = null;
    }
    if (response.status === 401) throw new Unauthorized((body && body.error) || "log in");
    if (!response.ok) {
      throw new Error((body && body.error) || `relay answered ${response.status}`);
    }
    return body;
  }

  function failed(error, generation) {
    if (generation !== view) return;
    if (error instanceof Unauthorized) {
      showLogin();
      return;
    }
    setLive(false);
    showProblem(error.message);
  }

  // -- views --------------------------------------------------------------------------------

  function showOnly(id) {
    for (const section of ["login", "history", "delivery"]) $(section).hidden = section !== id;
  }

  function showProblem(message) {
    $("problem").textContent = message;
    $("problem").hidden = !message;
  }

  function setLive(on) {
    $("live").hidden = !on;
  }

  function showLogin() {
    csrf = null;
    view += 1;
    clearTimeout(timer);
    setLive(false);
    $("logout").hidden = true;
    showOnly("login");
    $("token").focus();
  }

  function applySession(session) {
    csrf = session.csrf;
    services = session.services || {};
    $("logout").hidden = false;
    const form = $("filters");
    fillOptions(form.elements.chain, session.chains);
    fillOptions(form.elements.state, session.states);
  }

  function fillOptions(select, values) {
    while (select.options.length > 1) select.remove(1);
    for (const value of values) {
      const option = el("option", {}, value);
      option.value = value;
      select.append(option);
    }
  }

  function route() {
    view += 1;
    clearTimeout(timer);
    showProblem("");
    const match = location.pathname.match(/^\/ui\/deliveries\/([0-9a-v]{26})$/);
    if (match) showDelivery(match[1], view);
    else showHistory(view);
  }

  function navigate(path) {
    window.history.pushState(null, "", path);
    route();
  }

  function schedule(generation, next, ms) {
    clearTimeout(timer);
    timer = setTimeout(function tick() {
      if (generation !== view) return;
      if (document.hidden) {
        timer = setTimeout(tick, ms);
        return;
      }
      next();
    }, ms);
  }

  // -- the history ------------------------------------------------------------------------

  function filters() {
    const query = new URLSearchParams(location.search);
    const found = {};
    for (const name of FILTERS) {
      const value = (query.get(name) || "").trim();
      if (value) found[name] = value;
    }
    return found;
  }

  function showHistory(generation) {
    showOnly("history");
    const form = $("filters");
    const current = filters();
    for (const name of FILTERS) form.elements[name].value = current[name] || "";
    items = [];
    olderCursor = null;
    loadedOlder = false;
    overviewAt = 0;
    $("bulk").hidden = true;
    $("bulk-done").hidden = true;
    $("redeliver-these").hidden = !FINAL.has(current.state || "");
    renderRows();
    refreshList(generation);
  }

  // -- the overview -----------------------------------------------------------------------

  async function refreshOverview(generation) {
    overviewAt = Date.now();
    try {
      const found = await api("/ui/api/overview");
      if (generation !== view) return;
      drawChart(found.hours);
      renderTargets(found.targets);
    } catch (error) {
      failed(error, generation);
    }
  }

  function svg(tag, attributes, ...children) {
    const node = document.createElementNS(SVG, tag);
    for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
    for (const child of children) node.append(child);
    return node;
  }

  // Stacked bars, one per hour, drawn here: nothing is fetched from elsewhere.
  function drawChart(hours) {
    const width = 480, height = 140, bottom = 16, gap = 2;
    const outcomes = ["success", "failure", "error", "running"];
    const total = (h) => h.success + h.failure + h.error + h.running + h.pending;
    const most = Math.max(1, ...hours.map(total));
    const slot = width / hours.length;
    const chart = svg("svg", {viewBox: `0 0 ${width} ${height}`, role: "img",
                              "aria-label": "deliveries per hour by outcome, last 24 hours"});
    chart.append(svg("line", {class: "baseline", x1: 0, x2: width, y1: height - bottom,
                              y2: height - bottom}));
    hours.forEach((hour, index) => {
      const counts = {...hour, running: hour.running + hour.pending};
      let top = height - bottom;
      const bar = svg("g", {class: "hour", "data-hour": hour.hour, "data-total": total(hour)});
      const label = new Date(hour.hour);
      bar.append(svg("title", {}, `${label.toLocaleString()}: ` +
        outcomes.map((o) => `${counts[o]} ${o}`).join(", ")));
      for (const outcome of outcomes) {
        const h = (counts[outcome] / most) * (height - bottom - 4);
        if (h <= 0) continue;
        top -= h;
        bar.append(svg("rect", {class: `bar-${outcome}`, x: index * slot + gap / 2, y: top,
                                width: slot - gap, height: h}));
      }
      if (index % 6 === 0) {
        bar.append(svg("text", {class: "axis", x: index * slot, y: height - 4},
                       `${String(label.getHours()).padStart(2, "0")}:00`));
      }
      chart.append(bar);
    });
    chart.append(svg("text", {class: "axis", x: 0, y: 10}, `${most} per hour at most`));
    $("chart").replaceChildren(chart);
  }

  function renderTargets(targets) {
    const percent = (rate) => rate === null ? "—" : `${(rate * 100).toFixed(1)} %`;
    const ms = (value) => value === null ? "—" : `${value} ms`;
    $("target-rows").replaceChildren(...targets.map((t) => {
      const action = t.state === "paused" ? "resume" : "pause";
      const button = el("button", {type: "button", class: "quiet",
                                   "data-action": action}, action === "pause" ? "Pause"
                                                                              : "Resume");
      button.addEventListener("click", () => setTarget(t, action, button));
      const state = badge(t.state, null);
      return el("tr", {"data-chain": t.chain, "data-target": t.target, "data-state": t.state},
        el("td", {}, t.chain), el("td", {}, t.target),
        el("td", {}, state, t.paused_by ? el("span", {class: "muted"}, ` by ${t.paused_by}`)
                                        : null,
           t.waiting ? el("span", {class: "muted"}, ` (${t.waiting} waiting)`) : null),
        el("td", {title: `${t.attempts} attempts`}, percent(t.success_rate)),
        el("td", {}, ms(t.p50_ms)), el("td", {}, ms(t.p95_ms)),
        el("td", {class: "error-text"}, t.last_error || ""),
        el("td", {}, button));
    }));
  }

  async function setTarget(target, action, button) {
    button.disabled = true;
    const generation = view;
    const path = `/ui/api/targets/${encodeURIComponent(target.chain)}/` +
                 `${encodeURIComponent(target.target)}/${action}`;
    try {
      await api(path, {method: "POST"});
      if (generation === view) refreshOverview(generation);
    } catch (error) {
      button.disabled = false;
      failed(error, generation);
    }
  }

  // -- redelivering the filtered list -----------------------------------------------------

  async function bulkRedeliver(dryRun) {
    const generation = view;
    const body = {...filters(), dry_run: dryRun};
    const answer = await api("/ui/api/history/redeliver", {
      method: "POST", headers: {"Content-Type": "application/json"},
      body: JSON.stringify(body)});
    return generation === view ? answer : null;
  }

  async function askBulk() {
    $("bulk-done").hidden = true;
    try {
      const answer = await bulkRedeliver(true);
      if (answer === null) return;
      const what = Object.entries(filters()).map(([k, v]) => `${k} ${v}`).join(", ");
      $("bulk-text").textContent = answer.count === 0
        ? `No ended delivery matches (${what}).`
        : `Redeliver ${answer.count} deliveries (${what}), oldest first?`;
      $("bulk-yes").hidden = answer.count === 0;
      $("bulk-yes").textContent = `Redeliver ${answer.count}`;
      $("bulk").hidden = false;
    } catch (error) {
      failed(error, view);
    }
  }

  async function confirmBulk() {
    $("bulk-yes").disabled = true;
    try {
      const answer = await bulkRedeliver(false);
      if (answer === null) return;
      $("bulk").hidden = true;
      $("bulk-done").textContent = `Redelivered ${answer.count} deliveries.`;
      $("bulk-done").hidden = false;
    } catch (error) {
      failed(error, view);
    } finally {
      $("bulk-yes").disabled = false;
    }
  }

  async function refreshList(generation) {
    const query = new URLSearchParams({...filters(), limit: String(PAGE)});
    if (Date.now() - overviewAt >= OVERVIEW_MS) refreshOverview(generation);
    try {
      const page = await api(`/ui/api/history?${query}`);
      if (generation !== view) return;
      merge(page.items);
      if (!loadedOlder) olderCursor = page.next_cursor;
      renderRows();
      setLive(true);
      showProblem("");
    } catch (error) {
      failed(error, generation);
      if (error instanceof Unauthorized) return;
    }
    schedule(generation, () => refreshList(generation), POLL_LIST_MS);
  }

  // The newest page replaces what it covers; older rows below it stay.
  function merge(newest) {
    if (newest.length === 0) {
      items = loadedOlder ? items : [];
      return;
    }
    const oldest = newest[newest.length - 1].id;
    items = newest.concat(items.filter((item) => item.id < oldest));
  }

  async function loadOlder() {
    const generation = view;
    if (!olderCursor) return;
    const query = new URLSearchParams({...filters(), limit: String(PAGE), cursor: olderCursor});
    try {
      const page = await api(`/ui/api/history?${query}`);
      if (generation !== view) return;
      const known = new Set(items.map((item) => item.id));
      items = items.concat(page.items.filter((item) => !known.has(item.id)));
      olderCursor = page.next_cursor;
      loadedOlder = true;
      renderRows();
    } catch (error) {
      failed(error, generation);
    }
  }

  function renderRows() {
    const rows = items.map((item) => {
      const link = `/ui/deliveries/${item.id}`;
      const steps = el("span", {class: "pips"}, item.steps.map((step) =>
        el("span", {class: `pip state-${cssState(step.state)}`,
                    title: `${step.index + 1}. ${step.target}: ${step.state}`})));
      const row = el("tr", {"data-delivery-id": item.id, "data-state": item.state},
        el("td", {}, internal(link, when(item.received_at))),
        el("td", {}, item.chain),
        el("td", {}, item.repository),
        el("td", {}, item.tag),
        el("td", {}, badge(item.state)),
        el("td", {}, steps),
        el("td", {class: "summary"}, item.summary || (item.redelivery_of ? "redelivery" : "")));
      row.addEventListener("click", (event) => {
        if (event.target.closest("a")) return;
        navigate(link);
      });
      return row;
    });
    $("rows").replaceChildren(...rows);
    $("empty").hidden = items.length > 0;
    $("more").hidden = !olderCursor;
  }

  // -- one delivery ---------------------------------------------------------------------------

  function showDelivery(id, generation) {
    showOnly("delivery");
    lastDelivery = "";
    payloadOpen = false;
    $("delivery").replaceChildren(el("p", {class: "muted"}, "Loading…"));
    refreshDelivery(id, generation);
  }

  async function refreshDelivery(id, generation) {
    let finished = false;
    try {
      const delivery = await api(`/ui/api/history/${encodeURIComponent(id)}`);
      if (generation !== view) return;
      finished = FINAL.has(delivery.state);
      const text = JSON.stringify(delivery);
      if (text !== lastDelivery) {
        lastDelivery = text;
        $("delivery").replaceChildren(...renderDelivery(delivery));
      }
      setLive(!finished);
      showProblem("");
    } catch (error) {
      failed(error, generation);
      if (error instanceof Unauthorized) return;
    }
    schedule(generation, () => refreshDelivery(id, generation),
             finished ? POLL_FINISHED_MS : POLL_RUNNING_MS);
  }

  function renderDelivery(d) {
    const redeliver = el("button", {type: "button", id: "redeliver"}, "Redeliver");
    redeliver.addEventListener("click", () => redeliverNow(d.id, redeliver));
    const facts = el("dl", {class: "facts"},
      fact("Chain", d.chain),
      services[d.chain] ? fact("Service UUID", el("code", {}, services[d.chain])) : null,
      fact("Repository", d.repository),
      fact("Tag", d.tag || "—"),
      fact("Source", d.source),
      d.redelivery_of ? fact("Redelivery of",
                             internal(`/ui/deliveries/${d.redelivery_of}`, d.redelivery_of))
                      : null,
      fact("Received", when(d.received_at)),
      fact("Started", when(d.started_at)),
      fact("Finished", when(d.finished_at)),
      fact("Took", seconds(d.received_at, d.finished_at) || "—"));
    const head = el("div", {class: "card head"},
      el("div", {class: "title"},
         el("h1", {}, "Delivery ", el("code", {}, d.id)), badge(d.state)),
      d.summary ? el("p", {class: "summary"}, d.summary) : null,
      facts,
      el("div", {class: "actions"}, redeliver, internal("/ui", "← History")));
    const chain = el("ol", {class: "chain", "data-chain": d.chain},
                     d.steps.map((step) => renderStep(step)));
    const reports = [d.upstream, ...(d.notices || [])].filter(Boolean);
    const payload = el("details", {class: "payload"}, el("summary", {}, "Payload as received"),
                       el("pre", {}, JSON.stringify(d.payload, null, 2)));
    payload.open = payloadOpen;
    payload.addEventListener("toggle", () => { payloadOpen = payload.open; });
    return [
      head,
      el("h2", {}, "Chain"),
      chain,
      reports.length ? el("h2", {}, "When the chain ended") : null,
      reports.length ? el("div", {class: "reports"}, reports.map(renderNotice)) : null,
      payload,
    ].filter(Boolean);
  }

  function fact(name, value) {
    return [el("dt", {}, name), el("dd", {}, value)];
  }

  function renderStep(step) {
    return el("li", {class: `step state-${cssState(step.state)}`, "data-state": step.state,
                     "data-index": step.index},
      el("div", {class: "step-head"},
         el("span", {class: "index"}, String(step.index + 1)),
         el("strong", {class: "target"}, step.target), badge(step.state)),
      el("div", {class: "url muted"}, step.url),
      step.reason ? el("p", {class: "reason"}, step.reason) : null,
      renderAttempts(step.attempts),
      renderCallback(step.callback));
  }

  function renderAttempts(attempts) {
    if (!attempts || attempts.length === 0) {
      return el("p", {class: "attempts muted"}, "no attempt yet");
    }
    return el("table", {class: "attempts"},
      el("thead", {}, el("tr", {}, el("th", {}, "#"), el("th", {}, "at"),
                         el("th", {}, "status"), el("th", {}, "took"),
                         el("th", {}, "answer"))),
      el("tbody", {}, attempts.map((attempt, index) =>
        el("tr", {class: attempt.error ? "failed" : ""},
           el("td", {}, String(index + 1)),
           el("td", {}, when(attempt.at)),
           el("td", {class: "status"},
              attempt.status === null ? (attempt.error || "no answer") : String(attempt.status),
              attempt.error && attempt.status !== null ? el("div", {class: "muted"},
                                                            attempt.error) : null),
           el("td", {class: "duration"}, `${Number(attempt.duration_ms).toFixed(1)} ms`),
           el("td", {class: "answer"}, attempt.response && attempt.response.body
             ? el("details", {}, el("summary", {}, "body"),
                  el("pre", {class: "response"}, attempt.response.body +
                     (attempt.response.truncated ? "\n…" : "")))
             : null)))));
  }

  function renderCallback(callback) {
    if (!callback) return el("div", {class: "callback none muted"}, "no callback yet");
    return el("div", {class: `callback state-${cssState(callback.state)}`},
      badge(callback.state, "callback"),
      callback.description ? el("p", {class: "description"}, callback.description) : null,
      callback.context ? el("p", {class: "context muted"}, callback.context) : null,
      callback.target_url ? el("p", {class: "target-url"}, external(callback.target_url,
                                                                     "see the result ↗"))
                          : null,
      el("p", {class: "muted"}, "received ", when(callback.received_at)));
  }

  function renderNotice(notice) {
    return el("div", {class: `card notice state-${cssState(notice.state)}`},
      el("div", {class: "step-head"}, el("strong", {}, notice.kind), badge(notice.state),
         notice.status !== null && notice.status !== undefined
           ? el("span", {class: "muted"}, `HTTP ${notice.status}`) : null),
      el("div", {class: "url muted"}, notice.url),
      notice.reason ? el("p", {class: "reason"}, notice.reason) : null,
      notice.attempts && notice.attempts.length ? renderAttempts(notice.attempts) : null);
  }

  async function redeliverNow(id, button) {
    button.disabled = true;
    const generation = view;
    try {
      const answer = await api(`/ui/api/history/${encodeURIComponent(id)}/redeliver`,
                               {method: "POST"});
      if (generation === view) navigate(`/ui/deliveries/${answer.id}`);
    } catch (error) {
      button.disabled = false;
      failed(error, generation);
    }
  }

  // -- start ----------------------------------------------------------------------------------

  async function logIn(event) {
    event.preventDefault();
    const error = $("login-error");
    error.hidden = true;
    try {
      const response = await fetch("/ui/login", {
        method: "POST", credentials: "same-origin", cache: "no-store",
        headers: {"Content-Type": "application/json", Accept: "application/json"},
        body: JSON.stringify({token: $("token").value}),
      });
      const body = await response.json().catch(() => null);
      if (!response.ok) throw new Error((body && body.error) || `relay answered ${response.status}`);
      $("token").value = "";
      applySession(body);
      route();
    } catch (failure) {
      error.textContent = failure.message;
      error.hidden = false;
    }
  }

  async function logOut() {
    try {
      await api("/ui/logout", {method: "POST"});
    } catch (_) {
      // The session is gone either way.
    }
    showLogin();
  }

  async function start() {
    $("login-form").addEventListener("submit", logIn);
    $("logout").addEventListener("click", logOut);
    $("more").addEventListener("click", loadOlder);
    $("redeliver-these").addEventListener("click", askBulk);
    $("bulk-yes").addEventListener("click", confirmBulk);
    $("bulk-no").addEventListener("click", () => { $("bulk").hidden = true; });
    $("filters").addEventListener("submit", (event) => {
      event.preventDefault();
      const form = event.target;
      const query = new URLSearchParams();
      for (const name of FILTERS) {
        const value = form.elements[name].value.trim();
        if (value) query.set(name, value);
      }
      navigate(query.toString() ? `/ui?${query}` : "/ui");
    });
    $("filters").addEventListener("reset", (event) => {
      event.preventDefault();
      navigate("/ui");
    });
    document.addEventListener("click", (event) => {
      const link = event.target.closest("a[data-link]");
      if (!link || event.button !== 0 || event.ctrlKey || event.metaKey || event.shiftKey) return;
      event.preventDefault();
      navigate(link.getAttribute("href"));
    });
    window.addEventListener("popstate", route);
    try {
      applySession(await api("/ui/api/session"));
      route();
    } catch (error) {
      if (error instanceof Unauthorized) showLogin();
      else showProblem(error.message);
    }
  }

  start();
})();
