/* omnihub dashboard: reads GET /v1/analytics/* with the session cookie and draws the figures
   with Chart.js (vendored: chart.umd.min.js). Every chart also writes its numbers into the DOM
   (data-chart on its <figure>, data-* on the live counters), so they can be read without the
   picture. No inline script or style anywhere: the page's CSP allows only 'self'. */
(function () {
  "use strict";

  var body = document.body;
  var BASE = body.dataset.base || "";
  var COLORS = ["#2563eb", "#16a34a", "#f59e0b", "#db2777", "#7c3aed", "#0891b2", "#dc2626", "#65a30d", "#ea580c", "#475569"];
  var WEEKDAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
  var REALTIME_MS = 3000;
  var SUMMARY_MS = 60000;
  var charts = {};
  var channelColors = {};
  var state = { query: null, timing: "day" };

  function $(id) { return document.getElementById(id); }

  function status(text, bad) {
    var line = $("status");
    line.textContent = text;
    line.classList.toggle("bad", !!bad);
  }

  function colorOf(name) {
    if (!(name in channelColors)) {
      channelColors[name] = COLORS[Object.keys(channelColors).length % COLORS.length];
    }
    return channelColors[name];
  }

  function api(path, params) {
    var url = BASE + "/v1/analytics/" + path + (params ? "?" + new URLSearchParams(params).toString() : "");
    return fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } }).then(function (response) {
      if (response.status === 401) {
        window.location.assign(body.dataset.home || "/dashboard");  // the session ended: sign in again
        throw new Error("signed out");
      }
      return response.json().then(function (data) {
        if (!response.ok) {
          var error = (data && data.error) || {};
          throw new Error(error.message || ("HTTP " + response.status));
        }
        return data;
      });
    });
  }

  // --- Periods and buckets -------------------------------------------------------------------

  function pad(n) { return (n < 10 ? "0" : "") + n; }

  function localParts(instant, tz) {
    var parts = {};
    new Intl.DateTimeFormat("en-CA", {
      timeZone: tz, year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", hourCycle: "h23"
    }).formatToParts(instant).forEach(function (p) { parts[p.type] = p.value; });
    return parts;
  }

  function localDay(instant, tz) {
    var p = localParts(instant, tz);
    return p.year + "-" + p.month + "-" + p.day;
  }

  function localHour(instant, tz) {
    var p = localParts(instant, tz);
    return p.year + "-" + p.month + "-" + p.day + "T" + p.hour;
  }

  function addDays(day, n) {  // "YYYY-MM-DD" + n days, calendar arithmetic (no time zone)
    var d = new Date(Date.UTC(+day.slice(0, 4), +day.slice(5, 7) - 1, +day.slice(8, 10)) + n * 86400000);
    return d.getUTCFullYear() + "-" + pad(d.getUTCMonth() + 1) + "-" + pad(d.getUTCDate());
  }

  function addHour(hour) {  // "YYYY-MM-DDTHH" + 1 hour, on the local wall clock
    var d = new Date(Date.UTC(+hour.slice(0, 4), +hour.slice(5, 7) - 1, +hour.slice(8, 10), +hour.slice(11, 13)) + 3600000);
    return d.getUTCFullYear() + "-" + pad(d.getUTCMonth() + 1) + "-" + pad(d.getUTCDate()) + "T" + pad(d.getUTCHours());
  }

  function readControls() {
    var tz = $("tz").value.trim() || "UTC";
    var period = $("period").value;
    var sl = Number($("service-level").value) || 60;
    var target = Number($("sl-target").value) || 80;
    var now = new Date();
    var query = { tz: tz, service_level: String(sl), to: now.toISOString() };
    var timing = "day";
    var labels = [];
    if (period === "24h") {
      timing = "hour";
      var start = new Date(now.getTime() - 24 * 3600000);
      query.from = start.toISOString();
      for (var t = start.getTime(); t < now.getTime(); t += 3600000) {
        var key = localHour(new Date(t), tz);
        if (labels.indexOf(key) < 0) { labels.push(key); }
      }
      var last = localHour(now, tz);
      if (labels.indexOf(last) < 0) { labels.push(last); }
    } else {
      var days = { "7d": 7, "30d": 30, "90d": 90 }[period] || 7;
      var today = localDay(now, tz);
      query.from = addDays(today, 1 - days);
      for (var i = 0; i < days; i++) { labels.push(addDays(query.from, i)); }
    }
    return { query: query, timing: timing, labels: labels, threshold: sl, target: target };
  }

  // --- Charts ------------------------------------------------------------------------------------

  function record(figureId, data) {
    $(figureId).dataset.chart = JSON.stringify(data);
  }

  function draw(name, config) {
    config.options = config.options || {};
    config.options.animation = false;
    config.options.responsive = true;
    config.options.maintainAspectRatio = false;
    if (charts[name]) {
      charts[name].data = config.data;
      charts[name].options = config.options;
      charts[name].update("none");
      return charts[name];
    }
    charts[name] = new window.Chart($("chart-" + name), config);
    return charts[name];
  }

  function mergeLabels(labels, keys) {
    var all = labels.slice();
    keys.forEach(function (key) { if (all.indexOf(key) < 0) { all.push(key); } });
    return all.sort();
  }

  function shortLabel(key, timing) {
    return timing === "hour" ? key.slice(5, 10) + " " + key.slice(11, 13) + "h" : key.slice(5);
  }

  function conversationsChart(summary, controls) {
    var timing = controls.timing;
    var labels = mergeLabels(controls.labels, summary.groups.map(function (g) { return g[timing]; }));
    var channels = [];
    summary.groups.forEach(function (g) { if (channels.indexOf(g.channel) < 0) { channels.push(g.channel); } });
    channels.sort();
    var series = {};
    channels.forEach(function (c) { series[c] = labels.map(function () { return 0; }); });
    summary.groups.forEach(function (g) { series[g.channel][labels.indexOf(g[timing])] = g.metrics.cycles; });
    record("fig-conversations", { group_by: summary.group_by, timing: timing, labels: labels, series: series });
    var total = channels.reduce(function (sum, c) { return sum + series[c].reduce(function (a, b) { return a + b; }, 0); }, 0);
    $("cap-conversations").textContent = total + " cycles in the period (" +
      channels.map(function (c) { return c + " " + series[c].reduce(function (a, b) { return a + b; }, 0); }).join(", ") +
      "). Click a bar to list its cycles.";
    draw("conversations", {
      type: "bar",
      data: {
        labels: labels.map(function (l) { return shortLabel(l, timing); }),
        datasets: channels.map(function (c) { return { label: c, data: series[c], backgroundColor: colorOf(c), stack: "cycles" }; })
      },
      options: {
        scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } } },
        onClick: function (event, elements, chart) {
          var hit = chart.getElementsAtEventForMode(event, "nearest", { intersect: true }, false);
          if (!hit.length) { return; }
          var channel = chart.data.datasets[hit[0].datasetIndex].label;
          showCycles(labels[hit[0].index], channel);
        }
      }
    });
  }

  function timeSeries(summary, controls) {
    var timing = controls.timing;
    var labels = mergeLabels(controls.labels, summary.groups.map(function (g) { return g[timing]; }));
    var byKey = {};
    summary.groups.forEach(function (g) { byKey[g[timing]] = g.metrics; });
    function pick(fn) { return labels.map(function (l) { return byKey[l] ? fn(byKey[l]) : null; }); }
    var shown = labels.map(function (l) { return shortLabel(l, timing); });

    var p50 = pick(function (m) { return m.first_response.p50; });
    var p90 = pick(function (m) { return m.first_response.p90; });
    record("fig-first-response", { group_by: summary.group_by, labels: labels, series: { p50: p50, p90: p90 }, target_seconds: controls.threshold,
      total: { p50: summary.total.first_response.p50, p90: summary.total.first_response.p90, count: summary.total.first_response.count } });
    $("cap-first-response").textContent = "First response over the period: p50 " + seconds(summary.total.first_response.p50) +
      ", p90 " + seconds(summary.total.first_response.p90) + " (" + summary.total.first_response.count + " responses); target " + seconds(controls.threshold) + ".";
    draw("first-response", {
      type: "line",
      data: {
        labels: shown,
        datasets: [
          { label: "p50", data: p50, borderColor: "#2563eb", backgroundColor: "#2563eb", spanGaps: true },
          { label: "p90", data: p90, borderColor: "#f59e0b", backgroundColor: "#f59e0b", spanGaps: true },
          { label: "target", data: labels.map(function () { return controls.threshold; }), borderColor: "#dc2626", borderDash: [6, 4], pointRadius: 0 }
        ]
      },
      options: { scales: { y: { beginAtZero: true, title: { display: true, text: "seconds" } } } }
    });

    var ratio = pick(function (m) { return m.service_level.ratio === null ? null : Math.round(m.service_level.ratio * 1000) / 10; });
    var totalRatio = summary.total.service_level.ratio;
    record("fig-service-level", { labels: labels, series: { percent: ratio }, target_percent: controls.target,
      threshold_seconds: controls.threshold, total: summary.total.service_level });
    $("cap-service-level").textContent = "Service level " + (totalRatio === null ? "–" : (Math.round(totalRatio * 1000) / 10) + "%") +
      " answered within " + seconds(controls.threshold) + " (target " + controls.target + "%).";
    draw("service-level", {
      type: "bar",
      data: {
        labels: shown,
        datasets: [
          { type: "bar", label: "answered within " + controls.threshold + " s (%)", data: ratio,
            backgroundColor: ratio.map(function (v) { return v !== null && v >= controls.target ? "#16a34a" : "#f59e0b"; }) },
          { type: "line", label: "target", data: labels.map(function () { return controls.target; }), borderColor: "#dc2626", borderDash: [6, 4], pointRadius: 0 }
        ]
      },
      options: { scales: { y: { beginAtZero: true, max: 100, title: { display: true, text: "%" } } } }
    });

    var csat = summary.total.csat;
    var ratings = ["1", "2", "3", "4", "5"];
    record("fig-csat-distribution", { labels: ratings, series: { responses: ratings.map(function (r) { return csat.distribution[r]; }) },
      mean: csat.mean, score: csat.score, sent: csat.sent, responses: csat.responses });
    $("cap-csat-distribution").textContent = csat.responses + " ratings of " + csat.sent + " surveys; mean " +
      (csat.mean === null ? "–" : csat.mean) + ", satisfied " + (csat.score === null ? "–" : Math.round(csat.score * 100) + "%") + ".";
    draw("csat-distribution", {
      type: "bar",
      data: { labels: ratings, datasets: [{ label: "ratings", data: ratings.map(function (r) { return csat.distribution[r]; }),
        backgroundColor: ["#dc2626", "#f97316", "#eab308", "#84cc16", "#16a34a"] }] },
      options: { plugins: { legend: { display: false } }, scales: { y: { beginAtZero: true, ticks: { precision: 0 } } } }
    });
    var mean = pick(function (m) { return m.csat.mean; });
    record("fig-csat-trend", { labels: labels, series: { mean: mean } });
    draw("csat-trend", {
      type: "line",
      data: { labels: shown, datasets: [{ label: "mean rating", data: mean, borderColor: "#16a34a", backgroundColor: "#16a34a", spanGaps: true }] },
      options: { plugins: { legend: { display: false } }, scales: { y: { min: 1, max: 5 } } }
    });

    switchesFlow(summary.total.channel_switches);
  }

  function heatmap(summary) {
    var grid = $("heatmap-grid");
    var counts = {};
    var max = 0;
    summary.groups.forEach(function (g) {
      counts[g.weekday_hour] = g.metrics.cycles;
      max = Math.max(max, g.metrics.cycles);
    });
    record("fig-heatmap", { group_by: summary.group_by, cells: counts });
    grid.textContent = "";
    grid.appendChild(document.createElement("span"));
    for (var h = 0; h < 24; h++) {
      var hour = document.createElement("span");
      hour.className = "hour";
      hour.textContent = h % 3 === 0 ? String(h) : "";
      grid.appendChild(hour);
    }
    WEEKDAYS.forEach(function (day) {
      var label = document.createElement("span");
      label.className = "label";
      label.textContent = day;
      grid.appendChild(label);
      for (var hh = 0; hh < 24; hh++) {
        var key = day + "T" + pad(hh);
        var value = counts[key] || 0;
        var cell = document.createElement("span");
        cell.className = "cell";
        cell.dataset.key = key;
        cell.dataset.value = String(value);
        cell.title = day + " " + pad(hh) + ":00: " + value + " cycles";
        if (value) { cell.style.backgroundColor = "rgba(37, 99, 235, " + (0.15 + 0.85 * value / max).toFixed(3) + ")"; }
        grid.appendChild(cell);
      }
    });
  }

  var SVG = "http://www.w3.org/2000/svg";

  function svgEl(name, attrs, text) {
    var el = document.createElementNS(SVG, name);
    Object.keys(attrs).forEach(function (k) { el.setAttribute(k, attrs[k]); });
    if (text !== undefined) { el.textContent = text; }
    return el;
  }

  function switchesFlow(switches) {
    var svg = $("switches-svg");
    record("fig-switches", { switches: switches });
    svg.textContent = "";
    if (!switches.length) {
      svg.appendChild(svgEl("text", { x: 200, y: 110, "text-anchor": "middle" }, "No channel switches in this period."));
      $("cap-switches").textContent = "No customer moved to another channel in this period.";
      return;
    }
    var froms = [], tos = [];
    switches.forEach(function (s) {
      if (froms.indexOf(s.from) < 0) { froms.push(s.from); }
      if (tos.indexOf(s.to) < 0) { tos.push(s.to); }
    });
    var max = Math.max.apply(null, switches.map(function (s) { return s.count; }));
    function y(list, name) { return 20 + (list.indexOf(name) + 0.5) * (190 / list.length); }
    switches.forEach(function (s) {
      var y1 = y(froms, s.from), y2 = y(tos, s.to);
      svg.appendChild(svgEl("path", {
        d: "M110," + y1 + " C200," + y1 + " 200," + y2 + " 290," + y2,
        fill: "none", stroke: colorOf(s.from), "stroke-opacity": "0.55",
        "stroke-width": String(2 + 18 * s.count / max), "data-from": s.from, "data-to": s.to, "data-count": String(s.count)
      }));
      svg.appendChild(svgEl("text", { x: 200, y: (y1 + y2) / 2 - 4, "text-anchor": "middle" }, String(s.count)));
    });
    froms.forEach(function (name) {
      svg.appendChild(svgEl("rect", { x: 100, y: y(froms, name) - 12, width: 10, height: 24, fill: colorOf(name) }));
      svg.appendChild(svgEl("text", { x: 94, y: y(froms, name) + 4, "text-anchor": "end" }, name));
    });
    tos.forEach(function (name) {
      svg.appendChild(svgEl("rect", { x: 290, y: y(tos, name) - 12, width: 10, height: 24, fill: colorOf(name) }));
      svg.appendChild(svgEl("text", { x: 306, y: y(tos, name) + 4 }, name));
    });
    $("cap-switches").textContent = switches.map(function (s) { return s.from + " → " + s.to + ": " + s.count; }).join("; ") + ".";
  }

  function cell(row, text, attrs) {
    var td = document.createElement("td");
    td.textContent = text === null || text === undefined ? "–" : String(text);
    Object.keys(attrs || {}).forEach(function (k) { td.dataset[k] = attrs[k]; });
    row.appendChild(td);
    return td;
  }

  function emptyRow(tbody, columns, text) {
    var row = document.createElement("tr");
    var td = cell(row, text);
    td.colSpan = columns;
    td.className = "empty";
    tbody.appendChild(row);
  }

  function agentsTable(summary) {
    var tbody = $("agents-table").querySelector("tbody");
    tbody.textContent = "";
    var rows = summary.groups.map(function (g) {
      return { agent: g.agent, handled: g.metrics.resolved, handle_time_mean: g.metrics.handle_time.mean,
        first_response_p50: g.metrics.first_response.p50, csat_mean: g.metrics.csat.mean };
    });
    rows.sort(function (a, b) { return b.handled - a.handled || (a.agent < b.agent ? -1 : 1); });
    $("agents-table").dataset.rows = JSON.stringify(rows);
    if (!rows.length) { emptyRow(tbody, 5, "No agent activity in this period."); return; }
    rows.forEach(function (r) {
      var row = document.createElement("tr");
      row.dataset.agent = r.agent;
      cell(row, r.agent);
      cell(row, r.handled, { value: String(r.handled) });
      cell(row, seconds(r.handle_time_mean), { value: String(r.handle_time_mean) });
      cell(row, seconds(r.first_response_p50), { value: String(r.first_response_p50) });
      cell(row, r.csat_mean, { value: String(r.csat_mean) });
      tbody.appendChild(row);
    });
  }

  function seconds(value) {
    if (value === null || value === undefined || isNaN(value)) { return "–"; }
    var s = Math.round(value);
    if (s < 60) { return s + " s"; }
    if (s < 3600) { return Math.floor(s / 60) + "m " + pad(s % 60) + "s"; }
    return Math.floor(s / 3600) + "h " + pad(Math.floor(s % 3600 / 60)) + "m";
  }

  // --- Drill-down ------------------------------------------------------------------------------

  function bucketRange(key) {
    if (state.timing === "hour") { return { from: key + ":00:00", to: addHour(key) + ":00:00" }; }
    return { from: key, to: addDays(key, 1) };
  }

  function showCycles(key, channel) {
    var range = bucketRange(key);
    var params = { from: range.from, to: range.to, tz: state.query.tz, channel: channel, limit: "100" };
    var panel = $("cycles-panel");
    panel.dataset.query = new URLSearchParams(params).toString();
    panel.dataset.state = "loading";
    panel.hidden = false;
    $("cycles-title").textContent = "Cycles: " + channel + ", " + key.replace("T", " ") + (state.timing === "hour" ? ":00" : "");
    api("cycles", params).then(function (page) {
      var tbody = $("cycles-table").querySelector("tbody");
      tbody.textContent = "";
      panel.dataset.count = String(page.cycles.length);
      panel.dataset.ids = JSON.stringify(page.cycles.map(function (c) { return c.id; }));
      if (!page.cycles.length) { emptyRow(tbody, 8, "No cycles in this bucket."); }
      page.cycles.forEach(function (c) {
        var row = document.createElement("tr");
        row.dataset.cycleId = c.id;
        cell(row, new Date(c.started_at).toLocaleString(undefined, { timeZone: state.query.tz }));
        cell(row, c.channel);
        cell(row, c.queue);
        cell(row, (c.agents || []).join(", "));
        cell(row, seconds(c.first_response_seconds));
        cell(row, seconds(c.handle_time_seconds));
        cell(row, c.csat_rating);
        cell(row, c.conversation_id);
        tbody.appendChild(row);
      });
      $("cycles-more").hidden = !page.next_cursor;
      panel.dataset.state = "loaded";
      panel.scrollIntoView({ block: "nearest" });
    }).catch(function (error) {
      panel.dataset.state = "error";
      status("Could not list the cycles: " + error.message, true);
    });
  }

  // --- Realtime ------------------------------------------------------------------------------

  function realtime() {
    return api("realtime").then(function (now) {
      var totals = now.totals;
      var box = $("realtime-totals");
      var oldest = null;
      now.queues.forEach(function (q) {
        if (q.oldest_wait_seconds !== null && (oldest === null || q.oldest_wait_seconds > oldest)) { oldest = q.oldest_wait_seconds; }
      });
      ["open", "waiting", "offered", "assigned", "at_risk", "unassigned"].forEach(function (name) {
        box.dataset[name.replace("_", "")] = String(totals[name]);
        var el = $("rt-" + name);
        if (el) { el.textContent = String(totals[name]); el.dataset.value = String(totals[name]); }
      });
      box.dataset.oldestWait = oldest === null ? "" : String(oldest);
      box.dataset.at = now.at;
      $("rt-oldest").textContent = seconds(oldest);
      var tbody = $("realtime-table").querySelector("tbody");
      tbody.textContent = "";
      if (!now.queues.length) { emptyRow(tbody, 8, "Nothing open right now."); }
      now.queues.forEach(function (q) {
        var row = document.createElement("tr");
        row.dataset.queue = q.queue;
        row.dataset.channel = q.channel;
        cell(row, q.queue);
        cell(row, q.channel);
        ["open", "waiting", "offered", "assigned", "at_risk"].forEach(function (name) { cell(row, q[name], { value: String(q[name]) }); });
        cell(row, seconds(q.oldest_wait_seconds), { value: q.oldest_wait_seconds === null ? "" : String(q.oldest_wait_seconds) });
        tbody.appendChild(row);
      });
      var labels = now.queues.map(function (q) { return q.queue + " · " + q.channel; });
      record("fig-realtime", { labels: labels, series: {
        waiting: now.queues.map(function (q) { return q.waiting; }),
        offered: now.queues.map(function (q) { return q.offered; }),
        assigned: now.queues.map(function (q) { return q.assigned; }),
        oldest_wait_seconds: now.queues.map(function (q) { return q.oldest_wait_seconds; })
      }, totals: totals });
      draw("realtime", {
        type: "bar",
        data: { labels: labels, datasets: [
          { label: "waiting", data: now.queues.map(function (q) { return q.waiting; }), backgroundColor: "#f59e0b", stack: "depth" },
          { label: "offered", data: now.queues.map(function (q) { return q.offered; }), backgroundColor: "#7c3aed", stack: "depth" },
          { label: "assigned", data: now.queues.map(function (q) { return q.assigned; }), backgroundColor: "#16a34a", stack: "depth" }
        ] },
        options: { indexAxis: "y", scales: { x: { stacked: true, beginAtZero: true, ticks: { precision: 0 } }, y: { stacked: true } } }
      });
    });
  }

  // --- Loading -----------------------------------------------------------------------------------

  var loading = 0;

  function load() {
    var controls = readControls();
    var ticket = ++loading;
    state.query = controls.query;
    state.timing = controls.timing;
    var base = controls.query;
    function q(groupBy) { var p = Object.assign({}, base); p.group_by = groupBy; return p; }
    var requests = [
      ["conversations", q(controls.timing + ",channel")],
      ["series", q(controls.timing)],
      ["heatmap", q("weekday_hour")],
      ["agents", q("agent")]
    ];
    body.dataset.query = new URLSearchParams(base).toString();
    body.dataset.state = "loading";
    status("Loading…");
    return Promise.all(requests.map(function (r) { return api("summary", r[1]); })).then(function (results) {
      if (ticket !== loading) { return; }
      conversationsChart(results[0], controls);
      timeSeries(results[1], controls);
      heatmap(results[2]);
      agentsTable(results[3]);
      body.dataset.state = "loaded";
      status("Updated " + new Date().toLocaleTimeString() + " · " + controls.query.tz);
    }).catch(function (error) {
      body.dataset.state = "error";
      status("Could not load the figures: " + error.message, true);
    });
  }

  function tick() {
    realtime().catch(function (error) { status("Live figures unavailable: " + error.message, true); })
      .then(function () { window.setTimeout(tick, REALTIME_MS); });
  }

  function start() {
    if (!window.Chart) { status("The chart library did not load.", true); return; }
    var zone = "UTC";
    try { zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC"; } catch (e) { zone = "UTC"; }
    $("tz").value = zone;
    $("controls").addEventListener("submit", function (event) { event.preventDefault(); load(); });
    $("period").addEventListener("change", load);
    $("cycles-close").addEventListener("click", function () { $("cycles-panel").hidden = true; });
    load();
    tick();
    window.setInterval(function () { if (body.dataset.state !== "loading") { load(); } }, SUMMARY_MS);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
}());
