// streamtensor report page: renders the JSON of #st-data with Cytoscape.js (+ dagre layout) and Chart.js.
// window.stReport keeps the live objects (cy, charts) so a browser test can read what was rendered.
(function () {
  "use strict";
  const t0 = performance.now();
  const D = JSON.parse(document.getElementById("st-data").textContent);
  const ST = (window.stReport = { data: D, charts: {}, cy: null });
  const main = document.getElementById("st-main");
  const nav = document.getElementById("st-nav");
  const STATE_NAMES = ["busy", "stalled: input empty", "stalled: output full"];
  const STATE_COLORS = ["#43a047", "#fbc02d", "#e53935"];
  const KIND_COLORS = {
    kernel: "#4e79a7", itensor_converter: "#f28e2b", itensor_fork: "#76b7b2", dma_read: "#59a14f",
    dma_write: "#8cd17d", itensor_reassociate: "#b07aa1", itensor_chunk: "#bab0ac", itensor_concat: "#bab0ac",
  };
  const MEM_COLORS = { srl: "#90a4ae", lutram: "#4db6ac", bram: "#7986cb", uram: "#ba68c8" };

  function fmt(v, digits) {
    if (v === null || v === undefined) return "—";
    if (typeof v === "number") {
      if (Number.isInteger(v)) return v.toLocaleString("en-US");
      return v.toLocaleString("en-US", { maximumFractionDigits: digits === undefined ? 3 : digits });
    }
    if (typeof v === "boolean") return v ? "yes" : "no";
    return String(v);
  }
  function h(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "text") e.textContent = v;
      else if (k === "on") for (const [ev, fn] of Object.entries(v)) e.addEventListener(ev, fn);
      else e.setAttribute(k, v);
    }
    for (const c of kids) if (c !== null && c !== undefined) e.append(c);
    return e;
  }
  function section(id, title, note) {
    const s = h("section", { id: id }, h("h2", { text: title }));
    if (note) s.append(h("p", { class: "note", text: note }));
    main.append(s);
    nav.append(h("a", { href: "#" + id, text: title.split(":")[0] }));
    return s;
  }
  function table(columns, rows, attrs) {
    // columns: [label, key, numeric?]; rows: objects; attrs(row) -> tr attributes. Click a header to sort.
    const t = h("table", { class: "data" });
    const head = h("tr");
    columns.forEach(([label, key, num], i) => head.append(h("th", {
      class: num ? "" : "l", text: label, "data-col": key,
      on: { click: () => sortBy(i, num) } })));
    t.append(h("thead", {}, head));
    const body = h("tbody");
    for (const r of rows) {
      const tr = h("tr", attrs ? attrs(r) : {});
      for (const [, key, num] of columns) {
        const v = typeof key === "function" ? key(r) : r[key];
        tr.append(h("td", { class: num ? "" : "l", "data-col": typeof key === "string" ? key : "",
                            "data-value": v === null || v === undefined ? "" : String(v), text: fmt(v) }));
      }
      body.append(tr);
    }
    t.append(body);
    let asc = true;
    function sortBy(i, num) {
      const trs = Array.from(body.children);
      trs.sort((a, b) => {
        const x = a.children[i].dataset.value, y = b.children[i].dataset.value;
        const c = num ? Number(x) - Number(y) : x.localeCompare(y);
        return asc ? c : -c;
      });
      asc = !asc;
      trs.forEach((tr) => body.append(tr));
    }
    return h("div", { class: "scroll" }, t);
  }
  function chartBox(height) {
    const canvas = h("canvas");
    return [h("div", { class: "chart", style: `height:${height}px` }, canvas), canvas];
  }
  function chart(name, parent, height, config) {
    const [box, canvas] = chartBox(height);
    parent.append(box);
    config.options = Object.assign({ animation: false, maintainAspectRatio: false, responsive: true }, config.options);
    ST.charts[name] = new Chart(canvas, config);
    return ST.charts[name];
  }

  // ---------------------------------------------------------------- summary
  function summary() {
    const m = D.meta;
    const s = section("summary", "Summary",
      "Cycles are modelled: the token-level timing simulation of the dataflow graph at the target clock.");
    const dl = h("dl", { class: "summary" });
    const add = (label, key, value) => dl.append(h("div", {}, h("dt", { text: label }),
                                                      h("dd", { "data-key": key, text: fmt(value) })));
    add("model", "model", m.model); add("mode", "mode", m.mode); add("target", "target", m.target);
    add("clock (MHz)", "clock_mhz", m.clock_mhz);
    if (D.kind === "design") {
      add("makespan (cycles, modelled)", "makespan_cycles", m.makespan_cycles);
      add("makespan (µs, modelled)", "makespan_us", Number((m.makespan_cycles / m.clock_mhz).toFixed(3)));
      add("unbounded-FIFO makespan", "unbounded_makespan_cycles", D.simulation.unbounded_makespan_cycles);
      add("processes", "processes", m.processes); add("streams", "streams", m.streams);
      add("fusion groups", "fusion_groups", m.fusion_groups);
      add("FIFO bits", "fifo_total_bits", m.fifo_total_bits); add("FIFO strategy", "fifo_strategy", m.fifo_strategy);
      add("stalls: input empty", "stall_input_empty", D.simulation.stall_cycles.input_empty);
      add("stalls: output full", "stall_output_full", D.simulation.stall_cycles.output_full);
      add("quantization", "quantization", m.quantization); add("fits the device", "fits", m.fits);
      add("bottleneck", "bottleneck", D.bottleneck);
    }
    add("tool", "tool", m.tool);
    s.append(dl);
    for (const d of m.deadlocks || []) {  // let through by --allow-deadlock: the run stops at the wait-for cycle
      s.append(h("p", { class: "note", style: "color:#c62828;font-weight:600", "data-key": "deadlock",
                        text: `${d} (the timeline ends where the processes blocked)` }));
    }
  }

  // ---------------------------------------------------------------- graph
  function shortType(t) {
    const m = /^!?itensor<([^,]+),/.exec(t || "");
    return m ? m[1] : t || "";
  }
  // A DMA's pseudo-channels, one (first, last) range per stripe: "3", "3-4" or "0-1,2-3".
  function hbmRanges(ranges) {
    return ranges.map(([a, b]) => (a === b ? `${a}` : `${a}-${b}`)).join(",");
  }

  function nodeLabel(n) {
    const d = n.details || {};
    let sub = "";
    if (n.kind === "kernel") sub = `${d.op || ""} II=${d.ii ?? "?"}`;
    else if (n.kind === "itensor_converter") sub = `${fmt(d.buffer_bytes)} B: ${(d.reason || "").slice(0, 40)}`;
    else if (n.hbm) sub = `HBM[${hbmRanges(n.hbm)}]`;
    return (n.bottleneck ? "▲ bottleneck\n" : "") + n.id + (sub ? "\n" + sub : "");
  }
  function graph() {
    const s = section("graph", "Dataflow graph",
      "Every process (kernels, converters with their buffer and reason, forks, DMAs with their HBM pseudo-channels) " +
      "and stream (itensor element type, width in bits, FIFO depth d / simulated peak occupancy p) of every fusion " +
      "group. Red: the critical path (the chain ending at the last process to finish with the most busy cycles); " +
      "▲: the bottleneck (the process busy longest). Layered layout by dagre. Scroll to zoom, drag to pan, click " +
      "for details; stream labels appear when zoomed in; double-click a group to collapse it.");
    const controls = h("div", { class: "controls" });
    const legend = h("div", { class: "legend" });
    for (const [k, c] of Object.entries(KIND_COLORS)) {
      if (D.nodes.some((n) => n.kind === k)) legend.append(h("span", {}, h("i", { style: `background:${c}` }), k));
    }
    legend.append(h("span", {}, h("i", { style: "background:#d32f2f" }), "critical path"));
    const search = h("input", { type: "search", placeholder: "find a process or stream", size: "28" });
    controls.append(
      h("button", { text: "fit", on: { click: () => ST.cy.fit(undefined, 20) } }),
      h("button", { text: "100%", on: { click: () => zoomTo(1) } }),
      h("button", { text: "left-to-right / top-to-bottom", on: { click: () => relayout(true) } }),
      h("button", { text: "collapse / expand groups", on: { click: toggleAllGroups } }),
      h("label", {}, h("input", { type: "checkbox", id: "st-edge-labels", on: { change: edgeLabels } }),
        " stream labels at any zoom"),
      search, legend);
    s.append(controls);
    const details = h("div", { id: "st-details" }, h("p", { class: "note", text: "Click a process or a stream." }));
    const box = h("div", { id: "st-graph" });
    s.append(h("div", { class: "graph-wrap" }, box, details));

    const els = [];
    for (const g of D.groups) {
      els.push({ data: { id: `group${g.index}`, label: `fusion group ${g.index}`, isGroup: 1 }, classes: "group" });
    }
    for (const n of D.nodes) {
      const label = nodeLabel(n);
      const width = Math.max(...label.split("\n").map((l) => l.length)) * 6.9 + 14;
      els.push({ data: Object.assign({}, n, { parent: `group${n.group}`, label: label, w: width,
                                              h: 15 * label.split("\n").length + 10,
                                              color: KIND_COLORS[n.kind] || "#9e9e9e" }),
                 classes: (n.critical ? "crit " : "") + (n.bottleneck ? "bottleneck" : "") });
    }
    for (const e of D.edges) {
      const label = `${shortType(e.itype)} · ${e.width_bits}b · d${e.depth ?? "∞"} p${e.peak}`;
      els.push({ data: Object.assign({}, e, { label: label }), classes: e.critical ? "crit" : "" });
    }
    for (const c of D.crossings) {
      els.push({ data: { id: `x:${c.stream}`, source: c.source, target: c.target, label: `${c.stream} via HBM`,
                         stream: c.stream }, classes: "crossing" + (c.critical ? " crit" : "") });
    }
    ST.cy = cytoscape({
      container: box, elements: els, wheelSensitivity: 0.3, minZoom: 0.02, maxZoom: 4,
      style: [
        { selector: "node", style: {
          shape: "round-rectangle", "background-color": "data(color)", label: "data(label)", "text-wrap": "wrap",
          "text-valign": "center", "text-halign": "center", "font-size": 11, color: "#fff", width: "data(w)",
          height: "data(h)", "min-zoomed-font-size": 5, "text-outline-width": 0 } },
        { selector: "node.group", style: {
          "background-color": "#eceff1", "background-opacity": 0.5, "border-color": "#90a4ae", "border-width": 1,
          color: "#37474f", "text-valign": "top", "text-halign": "center", "font-size": 14, label: "data(label)" } },
        { selector: "node.group.collapsed", style: { "background-color": "#cfd8dc", width: 160, height: 50 } },
        { selector: "node.crit", style: { "border-width": 3, "border-color": "#d32f2f" } },
        { selector: "node.bottleneck", style: { "border-width": 6, "border-color": "#b71c1c", "border-style": "double" } },
        { selector: "edge", style: {
          width: 1.3, "line-color": "#90a4ae", "target-arrow-color": "#90a4ae", "target-arrow-shape": "triangle",
          "curve-style": "bezier", "arrow-scale": 0.8, label: "data(label)", "font-size": 9,
          "min-zoomed-font-size": 7, "text-rotation": "autorotate", color: "#37474f",
          "text-background-color": "#fff", "text-background-opacity": 0.8, "text-background-padding": 1 } },
        { selector: "edge.crit", style: { width: 3, "line-color": "#d32f2f", "target-arrow-color": "#d32f2f" } },
        { selector: "edge.crossing", style: { "line-style": "dashed", "line-color": "#6d4c41" } },
        { selector: "edge.labels", style: { "min-zoomed-font-size": 0 } },
        { selector: ":selected", style: { "overlay-color": "#1565c0", "overlay-opacity": 0.25 } },
        { selector: ".found", style: { "overlay-color": "#ff6f00", "overlay-opacity": 0.45 } },
      ],
    });
    let rankDir = "TB";
    function zoomTo(level) {  // centred on the bottleneck
      ST.cy.zoom(level);
      ST.cy.center(ST.cy.getElementById(D.bottleneck));
    }
    function relayout(flip) {
      if (flip) rankDir = rankDir === "TB" ? "LR" : "TB";
      ST.cy.layout({ name: "dagre", rankDir: rankDir, nodeSep: 18, rankSep: 42, edgeSep: 6, animate: false,
                     fit: true, padding: 20 }).run();
    }
    relayout(false);
    // #zoom=Z (e.g. report.html#zoom=1): open the graph at that zoom, centred on the bottleneck.
    const zoom = /zoom=([0-9.]+)/.exec(location.hash);
    if (zoom) zoomTo(Number(zoom[1]));
    function edgeLabels(ev) { ST.cy.edges().toggleClass("labels", ev.target.checked); }
    function toggleGroup(g) {
      const kids = g.children();
      const collapse = !g.hasClass("collapsed");
      g.toggleClass("collapsed", collapse);
      kids.style("display", collapse ? "none" : "element");
      g.data("label", collapse ? `fusion group ${g.id().slice(5)} (${kids.length} processes, collapsed)`
                               : `fusion group ${g.id().slice(5)}`);
    }
    function toggleAllGroups() { ST.cy.nodes(".group").forEach(toggleGroup); }
    ST.cy.on("dbltap", "node.group", (ev) => toggleGroup(ev.target));
    ST.cy.on("tap", "node, edge", (ev) => showDetails(ev.target));
    search.addEventListener("change", () => {
      ST.cy.elements().removeClass("found");
      const q = search.value.trim();
      if (!q) return;
      const hit = ST.cy.elements().filter((e) => (e.data("id") || "").includes(q) || (e.data("stream") || "").includes(q));
      hit.addClass("found");
      if (hit.length) ST.cy.fit(hit, 60);
    });
    function showDetails(e) {
      const d = e.data();
      const rows = [];
      const skip = new Set(["parent", "label", "w", "h", "color", "details", "isGroup"]);
      for (const [k, v] of Object.entries(d)) if (!skip.has(k) && typeof v !== "object") rows.push([k, v]);
      for (const [k, v] of Object.entries(d.details || {})) rows.push([k, v]);
      if (d.hbm) rows.push(["HBM pseudo-channels", hbmRanges(d.hbm)]);
      details.replaceChildren(h("b", { text: d.isGroup ? d.label : d.id }),
        h("table", {}, h("tbody", {}, ...rows.map(([k, v]) => h("tr", {}, h("td", { text: k }),
                                                                  h("td", { text: fmt(v) }))))));
    }
  }

  // ---------------------------------------------------------------- timeline
  function timeline() {
    const s = section("timeline", "Timeline",
      `Per process, from the timing simulation (modelled cycles): busy, stalled on an empty input, stalled on a full ` +
      `output. The run is cut into ${D.timeline.bins} slices, each drawn in the state the process spent most of it in; ` +
      `trace.json (Perfetto, chrome://tracing) has every span, the table below the exact totals.`);
    const controls = h("div", { class: "controls" });
    const from = h("input", { type: "number", value: "0", min: "0", style: "width:110px" });
    const to = h("input", { type: "number", value: String(D.timeline.makespan), style: "width:110px" });
    controls.append("cycles from ", from, " to ", to,
      h("button", { text: "zoom", on: { click: () => setRange(Number(from.value), Number(to.value)) } }),
      h("button", { text: "whole run", on: { click: () => setRange(0, D.timeline.makespan) } }));
    const legend = h("span", { class: "legend" });
    STATE_NAMES.forEach((n, i) => legend.append(h("span", {}, h("i", { style: `background:${STATE_COLORS[i]}` }), n)));
    controls.append(legend);
    s.append(controls);
    const labels = D.timeline.rows.map((r) => r.process);
    const datasets = STATE_NAMES.map((name, st) => ({
      label: name, backgroundColor: STATE_COLORS[st], borderWidth: 0, barPercentage: 0.9, categoryPercentage: 1,
      data: D.timeline.rows.flatMap((r) => r.segments.filter((sg) => sg[2] === st)
                                              .map((sg) => ({ x: [sg[0], sg[1]], y: r.process }))),
    }));
    const c = chart("timeline", s, Math.max(200, labels.length * 15 + 60), {
      type: "bar", data: { labels: labels, datasets: datasets },
      options: {
        indexAxis: "y", parsing: { xAxisKey: "x", yAxisKey: "y" },
        scales: { x: { type: "linear", min: 0, max: D.timeline.makespan, position: "top",
                       title: { display: true, text: "cycle (modelled)" } },
                  y: { stacked: true, ticks: { autoSkip: false, font: { size: 10 } } } },
        plugins: { legend: { display: false }, tooltip: { callbacks: {
          label: (ctx) => `${ctx.dataset.label}: cycles ${fmt(ctx.raw.x[0])}–${fmt(ctx.raw.x[1])}` } } },
      },
    });
    function setRange(a, b) { c.options.scales.x.min = a; c.options.scales.x.max = b; c.update(); }
    const rows = D.nodes.map((n) => Object.assign({}, n, { stalled: n.input_empty + n.output_full }));
    s.append(h("h3", { text: "Cycles by process (modelled)" }), table([
      ["process", "id"], ["group", "group", 1], ["kind", "kind"], ["busy", "busy", 1],
      ["stalled: input empty", "input_empty", 1], ["stalled: output full", "output_full", 1],
      ["last write (cycle)", "finish", 1]], rows, (r) => ({ "data-process": r.id, class: r.critical ? "crit" : "" })));
  }

  // ---------------------------------------------------------------- FIFOs
  function fifos() {
    const s = section("fifos", "FIFOs: depth vs peak occupancy",
      "Depth: the LP's (report.json fifos); peak: the most tokens the FIFO held in the timing simulation. A depth " +
      "above the peak is area the schedule never used; a peak at the depth is back-pressure.");
    const edges = D.edges.slice().sort((a, b) => (b.depth ?? 0) - (a.depth ?? 0));
    const log = Math.max(...edges.map((e) => e.depth || 1)) > 64;  // a few deep FIFOs would flatten the rest
    chart("fifo_depth", s, 300, {
      type: "bar",
      data: { labels: edges.map((e) => e.stream), datasets: [
        { label: "depth", data: edges.map((e) => e.depth), backgroundColor: "#90caf9" },
        { label: "peak occupancy", data: edges.map((e) => e.peak), backgroundColor: "#1565c0" }] },
      options: { scales: { y: Object.assign({ title: { display: true, text: "tokens" } },
                                            log ? { type: "logarithmic", min: 0.5 } : { type: "linear", min: 0 }),
                           x: { ticks: { display: edges.length <= 60, font: { size: 9 } } } } },
    });
    const bits = D.fifo_bits_by_memory;
    const grid = h("div", { class: "grid2" });
    s.append(grid);
    const left = h("div", {}, h("h3", { text: "FIFO bits by memory kind" }));
    grid.append(left);
    chart("fifo_memory", left, 220, {
      type: "bar", data: { labels: Object.keys(bits), datasets: [{ label: "bits", data: Object.values(bits),
        backgroundColor: Object.keys(bits).map((k) => MEM_COLORS[k] || "#999") }] },
      options: { plugins: { legend: { display: false } } },
    });
    const right = h("div", {}, h("h3", { text: "Streams" }));
    grid.append(right);
    right.append(table([["stream", "stream"], ["group", "group", 1], ["itensor type", "itype"],
      ["width (bits)", "width_bits", 1], ["tokens", "tokens", 1], ["depth", "depth", 1], ["peak", "peak", 1],
      ["memory", "memory"]], D.edges, (e) => ({ "data-stream": e.stream, "data-group": String(e.group) })));
  }

  // ---------------------------------------------------------------- resources, memory, HBM
  function resources() {
    const r = D.resources;
    if (!r) return;
    const s = section("resources", "Resources per SLR vs budget",
      "Estimated (not synthesized): the SLR plan's use of each die, as a share of one die's budget (the dashed " +
      "line is 100%).");
    const kinds = Object.keys(r.die);
    const slrs = r.per_slr || [];
    const palette = ["#5c6bc0", "#26a69a", "#ffa726", "#8d6e63", "#ec407a", "#78909c"];
    chart("resources", s, 260, {
      type: "bar",
      data: { labels: kinds.map((k) => `${k} (die ${fmt(r.die[k])})`), datasets: slrs.map((u, i) => ({
        label: `group ${u.group} SLR ${u.slr}`, backgroundColor: palette[i % palette.length],
        data: kinds.map((k) => Number((100 * u[k] / r.die[k]).toFixed(2))) })).concat([{
        type: "line", label: "die budget", data: kinds.map(() => 100), borderColor: "#000", borderDash: [6, 4],
        pointRadius: 0, fill: false }]) },
      options: { scales: { y: { beginAtZero: true, title: { display: true, text: "% of one die" } } } },
    });
    s.append(table([["resource", "k"], ["whole design", "v", 1], ["device utilization", "u", 1]],
      kinds.map((k) => ({ k: k, v: r[k], u: r.utilization[k] })), (row) => ({ "data-resource": row.k })));
    if (r.slr_plan) s.append(h("p", { class: "note", text: r.slr_plan.why }));
  }
  function memory() {
    const m = D.memory;
    if (!m) return;
    const s = section("memory", "On-chip memory: unfused vs fused",
      "Intermediate results kept on chip: unfused, every intermediate tensor whole; fused, the converters' buffers, " +
      "the kernels' local buffers and the FIFOs (report.json memory).");
    const kinds = [["converters", "converter_bytes", "#f28e2b"], ["kernel-local", "kernel_local_bytes", "#4e79a7"],
                   ["FIFOs", "fifo_bytes", "#76b7b2"]];
    chart("memory", s, 200, {
      type: "bar",
      data: { labels: ["unfused", "fused"], datasets: [
        { label: "intermediate tensors", data: [m.intermediate_unfused_bytes, 0], backgroundColor: "#bab0ac" },
        ...kinds.map(([label, key, color]) => ({ label: label, data: [0, m[key]], backgroundColor: color }))] },
      options: { indexAxis: "y", scales: { x: { stacked: true, title: { display: true, text: "bytes" } },
                                           y: { stacked: true } } },
    });
    s.append(h("p", { class: "note", "data-key": "fused_to_unfused",
                      text: `fused / unfused: ${fmt(m.fused_to_unfused, 4)}` }));
    if (D.converters.length) {
      s.append(h("h3", { text: "Converters" }), table([["node", "node"], ["group", "group", 1],
        ["buffer", (c) => c.buffer_shape.join("x")], ["bytes", "bytes", 1], ["reason", "reason"]], D.converters));
    }
  }
  function hbm() {
    const b = D.hbm;
    const s = section("hbm", "HBM traffic per pseudo-channel",
      "Bytes the DMAs stream per run (tokens x bus bytes per token), spread evenly over their tensor's channel range.");
    const labels = Array.from({ length: b.channels }, (_, i) => String(i));
    chart("hbm", s, 220, {
      type: "bar", data: { labels: labels, datasets: [{ label: "bytes per run", backgroundColor: "#6d4c41",
        data: labels.map((c) => b.bytes_per_channel[c] || 0) }] },
      options: { plugins: { legend: { display: false } },
                 scales: { x: { title: { display: true, text: "pseudo-channel" } },
                           y: { title: { display: true, text: "bytes" } } } },
    });
  }

  // ---------------------------------------------------------------- whole model, search
  function llm() {
    const L = D.llm;
    const f = L.figures;
    const s = section("llm", "Whole model: latency, TTFT, tokens/s",
      `[${L.paper_config}] (prompt tokens : new tokens). Ours: ${f.figures}. ` + (L.paper_comparable
        ? "The others: measured on boards by their authors (GPT-2 medium, the same [in:out])."
        : "The paper's figures (GPT-2 medium, 24 layers, hidden 1024) are shown only next to a build of that model."));
    const rows = [{ who: `${D.meta.model} on ${f.target} at ${fmt(f.clock_mhz)} MHz (this build)`, how: "modelled",
                    latency_ms: f.latency_ms, ttft_ms: f.ttft_ms, decode_tokens_per_s: f.decode_tokens_per_s }]
      .concat(L.paper.map((p) => Object.assign({ how: "measured (paper)" }, p)));
    s.append(table([["design", "who"], ["figures", "how"], ["latency (ms)", "latency_ms", 1],
                    ["TTFT (ms)", "ttft_ms", 1], ["decode tokens/s", "decode_tokens_per_s", 1]], rows,
                   (r) => ({ "data-who": r.who })));
    const step = f.overheads.per_decode_step_s;
    const grid = h("div", { class: "grid2" });
    s.append(grid);
    const left = h("div", {}, h("h3", { text: "One decode step (modelled, ms)" }));
    grid.append(left);
    chart("decode_step", left, 220, {
      type: "bar", data: { labels: Object.keys(step), datasets: [{ label: "ms", backgroundColor: "#5c6bc0",
        data: Object.values(step).map((v) => v * 1e3) }] },
      options: { indexAxis: "y", plugins: { legend: { display: false } } },
    });
    const right = h("div", {}, h("h3", { text: "Cycles per layer (modelled)" }));
    grid.append(right);
    chart("layers", right, 220, {
      type: "bar", data: { labels: f.layers.map((l) => String(l.layer)), datasets: [
        { label: "prefill", data: f.layers.map((l) => l.prefill_cycles), backgroundColor: "#26a69a" },
        { label: "decode", data: f.layers.map((l) => l.decode_cycles), backgroundColor: "#ffa726" }] },
      options: { scales: { y: { type: "logarithmic" } } },
    });
    const k = section("kernels", "Kernels", "Each kernel's own page has its graph and timeline.");
    k.append(table([["kernel", "name"], ["mode", "mode"], ["makespan (cycles)", "makespan_cycles", 1],
                    ["FIFO bits", "fifo_total_bits", 1], ["fits", "fits"]], D.kernels));
    const links = h("p", {});
    for (const kn of D.kernels) links.append(h("a", { href: kn.page, text: kn.name }), " ");
    k.append(links);
  }
  function dse() {
    const S = D.dse;
    const s = section("dse", "Design-space search", `Study ${S.study}: objectives ` +
      Object.entries(S.objectives).map(([n, d]) => `${n} (${d})`).join(", ") + ". All figures modelled.");
    const names = Object.keys(S.objectives);
    const trials = S.trials || [];
    const front = new Set(S.best.map((t) => t.trial));
    if (names.length >= 2 && trials.length) {
      const pts = (inFront) => trials.filter((t) => t.values && front.has(t.trial) === inFront)
        .map((t) => ({ x: t.values[names[0]], y: t.values[names[1]], trial: t.trial }));
      chart("dse", s, 300, {
        type: "scatter", data: { datasets: [
          { label: "trials", data: pts(false), backgroundColor: "#90a4ae" },
          { label: "Pareto front", data: pts(true), backgroundColor: "#d32f2f", pointRadius: 5 }] },
        options: { scales: { x: { title: { display: true, text: names[0] } },
                             y: { title: { display: true, text: names[1] } } } },
      });
    }
    const rows = (trials.length ? trials : S.best).map((t) => Object.assign(
      { trial: t.trial, state: t.state || "complete", best: front.has(t.trial) }, t.values || {}, t.params || {}));
    const keys = Array.from(new Set(rows.flatMap((r) => Object.keys(r))));
    s.append(table(keys.map((k) => [k, k, rows.some((r) => typeof r[k] === "number")]), rows));
  }

  summary();
  if (D.kind === "design") { graph(); timeline(); fifos(); resources(); memory(); hbm(); }
  if (D.llm) llm();
  if (D.dse) dse();
  // What was rendered, from the live objects (the browser test compares it with dataflow.mlir and report.json).
  const rendered = { errors: window.stErrors, mode: document.compatMode };
  if (ST.cy) {
    rendered.graph_nodes = ST.cy.nodes().filter((n) => !n.data("isGroup")).map((n) => n.id());
    rendered.graph_streams = ST.cy.edges().filter((e) => !e.hasClass("crossing")).map((e) => e.data("stream"));
    rendered.positioned = ST.cy.nodes().every((n) => Number.isFinite(n.position("x")) && Number.isFinite(n.position("y")));
  }
  if (ST.charts.timeline) rendered.timeline_rows = ST.charts.timeline.data.labels.slice();
  rendered.charts = Object.keys(ST.charts);
  rendered.render_ms = Math.round(performance.now() - t0);
  document.body.append(h("script", { type: "application/json", id: "st-rendered", text: JSON.stringify(rendered) }));
  const errs = document.getElementById("st-errors");
  errs.textContent = window.stErrors.join("\n");
  document.body.dataset.rendered = "done";
})();
