// The dashboard: reads the public API of this origin and nothing else.
// It polls /api/v1/summary with If-None-Match; a new ETag means a populate landed, and every
// view is read again with the current filters. ?refresh=N on the page URL sets the poll period.
"use strict";

(() => {
  const HOUR_MS = 3600 * 1000;
  const USERS_LIMIT = 10;
  const pageParams = new URLSearchParams(window.location.search);
  const pollSeconds = Math.max(1, Number(pageParams.get("refresh")) || 10);
  const byId = (id) => document.getElementById(id);
  const number = (n) => n.toLocaleString("en-US");

  const state = { summary: null, etag: null, chart: null, token: "", generation: 0 };

  function setStatus(text) {
    byId("status").textContent = text;
  }

  async function getJSON(path, headers = {}) {
    const response = await fetch(path, { headers: { Accept: "application/json", ...headers } });
    if (response.status === 304) return { status: 304, etag: response.headers.get("ETag") };
    const body = await response.json();
    if (!response.ok) {
      const message = body && body.error ? body.error.message : response.statusText;
      throw new Error(`${path}: ${response.status} ${message}`);
    }
    return { status: response.status, etag: response.headers.get("ETag"), body };
  }

  // --- filters ---------------------------------------------------------------------------

  function utcInput(date) {
    return date.toISOString().slice(0, 16); // what <input type=datetime-local> holds, read as UTC
  }

  function range() {
    const choice = byId("range").value;
    if (choice === "all") return {};
    if (choice === "custom") {
      const since = byId("since").value;
      const until = byId("until").value;
      return {
        ...(since ? { since: `${since}:00Z` } : {}),
        ...(until ? { until: `${until}:00Z` } : {}),
      };
    }
    const last = state.summary && state.summary.last_hour;
    if (!last) return {};
    // Anchored on the newest stored hour, not the clock: the sample's tweets are from the past.
    const end = new Date(Date.parse(last) + HOUR_MS);
    const start = new Date(end.getTime() - Number(choice) * HOUR_MS);
    return { since: start.toISOString().replace(".000Z", "Z"), until: end.toISOString().replace(".000Z", "Z") };
  }

  function filters(withRange) {
    const params = {};
    const tag = byId("tag").value;
    if (tag) params.tag = tag;
    return withRange ? { ...params, ...range() } : params;
  }

  function url(path, params) {
    const query = new URLSearchParams(params).toString();
    return query ? `${path}?${query}` : path;
  }

  function describeFilters() {
    const tag = byId("tag").value || "all tags";
    const { since, until } = range();
    const span = since || until ? `from ${since || "the start"} until ${until || "now"}` : "all time";
    byId("filter-note").textContent = `Showing ${tag}, ${span}.`;
  }

  function syncCustomInputs() {
    const custom = byId("range").value === "custom";
    byId("since-row").hidden = !custom;
    byId("until-row").hidden = !custom;
    if (custom && !byId("since").value && state.summary && state.summary.first_hour) {
      byId("since").value = utcInput(new Date(state.summary.first_hour));
      byId("until").value = utcInput(new Date(Date.parse(state.summary.last_hour) + HOUR_MS));
    }
  }

  // --- rendering -------------------------------------------------------------------------

  function renderSummary(summary) {
    byId("total-tweets").textContent = number(summary.tweets);
    byId("total-authors").textContent = number(summary.authors);
    byId("total-tags").textContent = number(summary.tags);
    const last = summary.last_populate;
    byId("last-populate").textContent = last ? last.finished_at.replace("T", " ").slice(0, 19) + " UTC" : "never";
    byId("last-source").textContent = last ? (last.source === "x" ? "X API" : last.source) : "";
    byId("token-row").hidden = !summary.token_required;
    const select = byId("tag");
    const known = new Set(Array.from(select.options, (o) => o.value));
    for (const tag of summary.configured_tags) {
      if (!known.has(tag)) select.add(new Option(tag, tag));
    }
  }

  // Axis ticks in UTC and 24-hour time: the date at midnight, the hour otherwise.
  function hourLabels(u, splits) {
    return splits.map((seconds) => {
      const iso = new Date(seconds * 1000).toISOString();
      return iso.slice(11, 13) === "00" ? iso.slice(5, 10) : `${iso.slice(11, 13)}:00`;
    });
  }

  function renderHours(rows) {
    byId("hour-total").textContent = number(rows.reduce((sum, r) => sum + r.count, 0));
    byId("hour-count").textContent = number(rows.length);
    byId("hour-empty").hidden = rows.length > 0;
    const total = rows.reduce((sum, r) => sum + r.count, 0);
    const busiest = rows.reduce((best, r) => (r.count > best.count ? r : best), { count: 0 });
    byId("hour-chart").setAttribute(
      "aria-label",
      rows.length
        ? `Bar chart: ${number(total)} tweets over ${number(rows.length)} hours, the most (${number(busiest.count)}) in the hour from ${busiest.date}.`
        : "Bar chart of tweets per UTC hour: no tweets in this range.",
    );
    const data = [rows.map((r) => Date.parse(r.date) / 1000), rows.map((r) => r.count)];
    const box = byId("hour-chart");
    const size = { width: Math.max(200, box.clientWidth), height: box.clientWidth < 500 ? 220 : 300 };
    if (state.chart) {
      state.chart.setData(data);
      return;
    }
    state.chart = new uPlot(
      {
        ...size,
        tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"),
        legend: { show: true },
        cursor: { drag: { x: false, y: false } },
        // Half an hour of room on each side, so the first and last bars are drawn whole.
        scales: { x: { time: true, range: (u, min, max) => [min - 1800, max + 1800] } },
        axes: [{ stroke: "#1a1a1a", values: hourLabels }, { stroke: "#1a1a1a", label: "tweets" }],
        series: [
          { label: "hour (UTC)" },
          {
            label: "tweets",
            stroke: "#1f6fb2",
            fill: "rgba(31, 111, 178, 0.35)",
            paths: uPlot.paths.bars({ size: [0.8, 40] }),
            points: { show: false },
          },
        ],
      },
      data,
      box,
    );
    new ResizeObserver(() => {
      state.chart.setSize({ width: Math.max(200, box.clientWidth), height: box.clientWidth < 500 ? 220 : 300 });
    }).observe(box);
  }

  function fillTable(id, rows, cells) {
    const body = byId(id).tBodies[0];
    body.replaceChildren(
      ...rows.map((row, index) => {
        const tr = document.createElement("tr");
        for (const [text, numeric] of cells(row, index)) {
          const td = document.createElement("td");
          td.textContent = text;
          if (numeric) td.className = "num";
          tr.append(td);
        }
        return tr;
      }),
    );
    if (rows.length === 0) {
      const tr = document.createElement("tr");
      const td = document.createElement("td");
      td.colSpan = byId(id).tHead.rows[0].cells.length;
      td.textContent = "No data.";
      tr.append(td);
      body.append(tr);
    }
  }

  // --- loading ---------------------------------------------------------------------------

  async function loadViews() {
    const generation = ++state.generation;
    const withRange = filters(true);
    const tagOnly = filters(false);
    const paths = {
      hour: url("/api/v1/hour", withRange),
      users: url("/api/v1/users", { limit: USERS_LIMIT, ...tagOnly }),
      tags: url("/api/v1/tags", withRange),
    };
    byId("hour-csv").href = url("/api/v1/hour", { ...withRange, format: "csv" });
    byId("users-csv").href = url("/api/v1/users", { limit: USERS_LIMIT, ...tagOnly, format: "csv" });
    byId("tags-csv").href = url("/api/v1/tags", { ...withRange, format: "csv" });
    describeFilters();
    const [hours, users, tags] = await Promise.all([getJSON(paths.hour), getJSON(paths.users), getJSON(paths.tags)]);
    if (generation !== state.generation) return; // a newer selection is already loading
    renderHours(hours.body);
    fillTable("users-table", users.body, (r, i) => [[String(i + 1), true], [`@${r.username}`, false], [number(r.followers), true]]);
    fillTable("tags-table", tags.body, (r) => [[r.tag, false], [r.language, false], [r.country ?? "—", false], [number(r.count), true]]);
    // What the page shows now, and how many times it rendered: for tests and the curious.
    document.body.dataset.loaded = paths.hour;
    document.body.dataset.renders = String(Number(document.body.dataset.renders || 0) + 1);
  }

  async function poll() {
    const headers = state.etag ? { "If-None-Match": state.etag } : {};
    const answer = await getJSON("/api/v1/summary", headers);
    if (answer.status === 304) return false;
    state.etag = answer.etag;
    state.summary = answer.body;
    renderSummary(answer.body);
    syncCustomInputs();
    await loadViews();
    setStatus(`Updated ${new Date().toISOString().slice(11, 19)} UTC`);
    return true;
  }

  async function pollForever() {
    try {
      await poll();
    } catch (error) {
      setStatus(`Cannot reach the API (${error.message}); retrying.`);
    }
    window.setTimeout(pollForever, pollSeconds * 1000);
  }

  async function populate(event) {
    event.preventDefault();
    const button = byId("populate");
    const result = byId("populate-result");
    const headers = {};
    const token = byId("token").value.trim();
    if (state.summary && state.summary.token_required) {
      if (!token) {
        result.textContent = "This service needs its API token to populate.";
        byId("token").focus();
        return;
      }
      headers.Authorization = `Bearer ${token}`;
    }
    button.disabled = true;
    result.textContent = "Populating…";
    try {
      const response = await fetch("/api/v1/populate", { method: "POST", headers });
      const body = await response.json();
      if (response.status === 201) {
        result.textContent = `Stored ${number(body.tweets_new)} new tweets of ${number(body.tweets_seen)} received (${body.source}).`;
        await poll();
      } else {
        result.textContent = `Populate refused: ${body.error ? body.error.message : response.status}.`;
      }
    } catch (error) {
      result.textContent = `Populate failed: ${error.message}.`;
    } finally {
      button.disabled = false;
    }
  }

  function onFilterChange() {
    syncCustomInputs();
    loadViews().catch((error) => setStatus(`Cannot load the views (${error.message}).`));
  }

  byId("filters").addEventListener("change", onFilterChange);
  byId("filters").addEventListener("submit", (event) => event.preventDefault());
  byId("populate-form").addEventListener("submit", populate);
  pollForever();
})();
