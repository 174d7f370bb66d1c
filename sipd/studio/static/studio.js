/* sipd studio: draw examples on a scene, watch the live label map, train models.
 *
 * Plain ES2020, no framework and no build step: everything this page needs is
 * served by sipd itself (docs/studio.md is the HTTP/JSON contract it codes
 * against). Sections:
 *   1. state and small helpers      6. ROIs: WKT, drawing, hit tests, editing
 *   2. the API and messages         7. undo / redo
 *   3. projects, scenes, display    8. live model and suggestions
 *   4. the view transform           9. training, models, tests, predictions
 *   5. tiles and drawing the map   10. input (mouse, wheel, keys) and start-up
 */
(() => {
  "use strict";

  // ------------------------------------------------------------------
  // 1. State and small helpers
  // ------------------------------------------------------------------

  const TILE = 256;
  const TILE_CACHE_MAX = 200; // images; bounds browser memory whatever the scene size
  const PREDICTION_CACHE_MAX = 64; // label map tiles: one view's worth and some more
  const TILE_RETRY_MS = 5000; // a failed tile is asked again after this
  const ROI_RELOAD_MS = 10000; // ROIs imported with sipctl show up within this
  const LIVE_EDIT_DELAY_MS = 300;
  const LIVE_VIEW_DELAY_MS = 600;
  const JOB_POLL_MS = 1000;
  const HIT_TOLERANCE_PX = 6; // screen pixels around a shape that still hit it
  const DRAG_THRESHOLD_PX = 4; // a press that moves more is a drag, not a click
  const FINAL_STATES = new Set(["SUCCEEDED", "FAILED", "CANCELLED"]);

  const $ = (id) => document.getElementById(id);
  const enc = encodeURIComponent;

  const state = {
    session: null,
    projects: [],
    project: null, // Project object of the selected project
    scenes: [],
    scene: null, // Scene object of the selected scene
    stats: null, // [BandStats] of the scene, or null when unavailable
    display: { mode: "rgb", bands: [1, 2, 3], stretch: "percentile", lo: [], hi: [] },
    className: null,
    split: "train",
    tool: "pan",
    brushWidth: 3,
    rois: [], // Roi objects of the scene, each with a parsed `geom`
    selectedId: null,
    drawing: null, // {kind: "line"|"polygon", pts: [[x, y]...]} while one is being drawn
    hover: null, // scene position of the cursor, for the rubber band
    undo: [],
    redo: [],
    idMap: new Map(), // ROI id -> the id it got when re-posted by undo / redo
    view: { scale: 1, ox: 0, oy: 0 }, // screen = scene * scale + offset (CSS pixels)
    layers: {
      image: { visible: true, opacity: 1 },
      rois: { visible: true, opacity: 1 },
      prediction: { visible: true, opacity: 0.7 },
      labels: { visible: true, opacity: 0.5 },
      uncertainty: { visible: true, opacity: 0.5 },
    },
    live: {
      enabled: false,
      timer: null,
      inFlight: false,
      pending: false,
      pendingSuggest: false,
      revision: 0,
      overlay: null, // {sceneKey, x, y, width, height, labels: Image, uncertainty: Image}
    },
    suggestions: [],
    suggestionIndex: -1,
    job: null, // the training job shown in the Train panel
    jobTimers: {}, // one poll timer per kind of job the page watches: train, test, predict
    jobSeenStates: [],
    chart: [], // [{loss, valLoss, acc, valAcc}], a point each time the metrics change
    models: [],
    modelsProject: null, // the project whose versions `models` holds
    selectedModel: null,
    predictChosen: false, // the person picked a version to predict with
    testJob: null, // {id, version} of the test job being watched
    predict: {
      job: null, // the predict job shown in the Predict panel
      sceneKey: "", // the scene it labels
      layer: null, // {jobId, sceneKey, version} once it succeeded: the prediction layer
    },
    signedOut: false,
    readOnly: false,
  };

  const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, v));
  const fmt2 = (v) => Number(v).toFixed(2);

  function fmtNum(v, digits = 3) {
    if (v === null || v === undefined || Number.isNaN(Number(v))) return "–";
    return Number(v).toFixed(digits);
  }

  // A stretch value as typed in an input: short but exact enough.
  function fmtStretch(v) {
    const n = Number(v);
    if (!Number.isFinite(n)) return "";
    return Number.isInteger(n) ? String(n) : String(Number(n.toPrecision(6)));
  }

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else if (k === "dataset") Object.assign(node.dataset, v);
      else node.setAttribute(k, v);
    }
    for (const c of children) node.append(c);
    return node;
  }

  // Keys typed into a field (or choosing in a select) are not shortcuts; a focused
  // checkbox, slider or button does not take letters, so shortcuts still work there.
  const NOT_TEXT_INPUTS = new Set(["checkbox", "radio", "range", "button", "submit", "reset", "color", "file"]);
  function isTyping(target) {
    if (!target || !(target instanceof Element)) return false;
    const tag = target.tagName;
    if (tag === "INPUT") return !NOT_TEXT_INPUTS.has((target.type || "text").toLowerCase());
    return tag === "TEXTAREA" || tag === "SELECT" || target.isContentEditable;
  }

  function sceneKey() {
    return state.project && state.scene ? `${state.project.id}/${state.scene.id}` : "";
  }

  function scenePath() {
    return `/api/projects/${enc(state.project.id)}/scenes/${enc(state.scene.id)}`;
  }

  function classByName(name) {
    return state.project ? (state.project.classes || []).find((c) => c.name === name) || null : null;
  }

  function classColor(name) {
    const c = classByName(name);
    return c && c.color ? c.color : "#ff00ff";
  }

  // ------------------------------------------------------------------
  // 2. The API and messages
  // ------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, message, code) {
      super(message);
      this.status = status;
      this.code = code || "";
    }
  }

  // One request to the daemon. The auth cookie travels with same-origin requests;
  // state-changing ones carry the custom header the server requires (CSRF guard).
  async function api(method, path, body) {
    const opts = { method, credentials: "same-origin", headers: {} };
    if (method !== "GET") {
      opts.headers["X-Sipd-Studio"] = "1";
      opts.headers["Content-Type"] = "application/json";
      if (body !== undefined) opts.body = JSON.stringify(body);
    }
    let resp;
    try {
      resp = await fetch(path, opts);
    } catch (err) {
      throw new ApiError(0, `sipd did not answer (${err.message}); is the daemon running?`, "UNAVAILABLE");
    }
    if (resp.status === 401) showSignedOut();
    const text = await resp.text();
    let data = null;
    if (text) {
      try {
        data = JSON.parse(text);
      } catch (_) {
        data = null;
      }
    }
    if (!resp.ok) {
      const message = data && data.error ? data.error : `${resp.status} ${resp.statusText}`;
      throw new ApiError(resp.status, message, data && data.code);
    }
    return data || {};
  }

  let messageTimer = null;

  // Errors stay until closed or replaced; information fades after a while.
  function showMessage(text, kind = "error", source = "") {
    const box = $("message");
    box.replaceChildren(
      el("span", { class: "text", text }),
      el("button", { class: "close", type: "button", title: "close", "aria-label": "close", onclick: () => hideMessage() })
    );
    box.className = kind;
    box.dataset.source = source;
    box.hidden = false;
    clearTimeout(messageTimer);
    if (kind !== "error") messageTimer = setTimeout(() => hideMessage(), 8000);
  }

  // Hide the message; with `source`, only a message that came from there.
  function hideMessage(source) {
    const box = $("message");
    if (source && box.dataset.source !== source) return;
    box.hidden = true;
  }

  function showError(what, err) {
    if (err instanceof ApiError && err.status === 401) return; // the overlay says it
    const code = err && err.code ? ` [${err.code}]` : "";
    showMessage(`${what}: ${err && err.message ? err.message : err}${code}`, "error");
    console.error(what, err);
  }

  function showSignedOut() {
    state.signedOut = true;
    $("signin-overlay").hidden = false;
  }

  // ------------------------------------------------------------------
  // 3. Projects, scenes and display settings
  // ------------------------------------------------------------------

  async function loadSession() {
    try {
      state.session = await api("GET", "/api/session");
      const s = state.session;
      $("session-who").textContent = `${s.who || ""} (${s.scope || ""}) ${s.version ? "v" + s.version : ""}`;
      if (s.scope === "read") {
        // A read-only token: drawing, live and training would only answer 403.
        for (const id of ["tool-point", "tool-line", "tool-polygon", "tool-select", "undo", "redo", "live", "suggest", "train", "predict"])
          $(id).disabled = true;
        state.readOnly = true;
        showMessage("This token can only read: drawing, the live model and training are off.", "info");
      }
    } catch (err) {
      showError("session", err);
    }
  }

  async function loadProjects(keep = true) {
    const wanted = keep && state.project ? state.project.id : null;
    const data = await api("GET", "/api/projects");
    state.projects = data.projects || [];
    const sel = $("project");
    sel.replaceChildren(...state.projects.map((p) => el("option", { value: p.id, text: p.id })));
    if (!state.projects.length) {
      sel.append(el("option", { value: "", text: "(no projects: sipctl project create)" }));
      await selectProject(null);
      return;
    }
    const id = state.projects.some((p) => p.id === wanted) ? wanted : state.projects[0].id;
    sel.value = id;
    await selectProject(id, keep);
  }

  async function selectProject(id, keepScene = false) {
    const wantedScene = keepScene && state.scene ? state.scene.id : null;
    state.project = id ? state.projects.find((p) => p.id === id) || null : null;
    if (state.project) {
      // The full record (classes and colours) from the project route.
      try {
        state.project = await api("GET", `/api/projects/${enc(id)}`);
      } catch (err) {
        showError(`project ${id}`, err);
      }
    }
    renderClasses();
    loadModels();
    state.scenes = [];
    const sel = $("scene");
    if (!state.project) {
      sel.replaceChildren();
      await selectScene(null);
      return;
    }
    try {
      const data = await api("GET", `/api/projects/${enc(state.project.id)}/scenes`);
      state.scenes = data.scenes || [];
    } catch (err) {
      showError("scenes", err);
    }
    sel.replaceChildren(...state.scenes.map((s) => el("option", { value: s.id, text: `${s.id} (${s.width}×${s.height})` })));
    if (!state.scenes.length) {
      sel.append(el("option", { value: "", text: "(no scenes: sipctl scene add)" }));
      await selectScene(null);
      return;
    }
    const sid = state.scenes.some((s) => s.id === wantedScene) ? wantedScene : state.scenes[0].id;
    sel.value = sid;
    await selectScene(sid, sid === wantedScene);
  }

  async function selectScene(id, keepView = false) {
    const previous = sceneKey();
    state.scene = id ? state.scenes.find((s) => s.id === id) || null : null;
    const changed = sceneKey() !== previous;
    if (changed) {
      // Edits, overlays and suggestions belong to one scene.
      state.rois = [];
      state.selectedId = null;
      state.drawing = null;
      state.undo = [];
      state.redo = [];
      state.idMap.clear();
      state.live.overlay = null;
      state.predict.layer = null; // a label map belongs to the scene it labels
      predictionTiles.clear();
      state.suggestions = [];
      state.suggestionIndex = -1;
      renderSuggestions();
      updateUndoButtons();
    }
    renderSceneInfo();
    updatePredictButton();
    if (!state.scene) {
      scheduleDraw();
      return;
    }
    state.stats = null;
    try {
      const data = await api("GET", `${scenePath()}/stats`);
      state.stats = data.bands || null;
    } catch (err) {
      showError("band statistics (tiles use the server's default stretch)", err);
    }
    setupBands();
    if (changed || !keepView) fitView();
    await loadRois();
    document.body.dataset.ready = "1";
    scheduleLive(LIVE_VIEW_DELAY_MS);
    scheduleDraw();
  }

  function renderSceneInfo() {
    const s = state.scene;
    $("scene-info").textContent = s
      ? `${s.width} × ${s.height} px, ${s.band_count} bands ${s.dtype || ""}` +
        `${s.nodata !== null && s.nodata !== undefined ? ", nodata " + s.nodata : ""}, ${s.crs ? "CRS set" : "no CRS"}`
      : "";
  }

  // "3: nir": the scene's own band name, else the project's name for that band
  // (a scene without band descriptions has empty names), else the number alone.
  function bandLabel(i) {
    const s = state.scene;
    const names = (s && s.band_names) || [];
    const stat = state.stats && state.stats[i - 1];
    const projectBands = (state.project && state.project.bands) || [];
    const name = names[i - 1] || (stat && stat.name) || projectBands[i - 1] || "";
    return name ? `${i}: ${name}` : String(i);
  }

  // Band selects and stretch inputs for the new scene: RGB 1,2,3 when there are
  // three bands or more, else grey band 1.
  function setupBands() {
    const n = state.scene.band_count || 1;
    const options = () => Array.from({ length: n }, (_, k) => el("option", { value: String(k + 1), text: bandLabel(k + 1) }));
    for (const id of ["band-r", "band-g", "band-b"]) $(id).replaceChildren(...options());
    const d = state.display;
    d.mode = n >= 3 ? "rgb" : "grey";
    d.bands = n >= 3 ? [1, 2, 3] : [1];
    $("band-mode").value = d.mode;
    $("band-r").value = "1";
    $("band-g").value = String(Math.min(2, n));
    $("band-b").value = String(Math.min(3, n));
    if ($("stretch").value === "custom") $("stretch").value = "percentile";
    readBandSelects();
  }

  function readBandSelects() {
    const d = state.display;
    d.mode = $("band-mode").value;
    const r = Number($("band-r").value) || 1;
    d.bands = d.mode === "grey" ? [r] : [r, Number($("band-g").value) || 1, Number($("band-b").value) || 1];
    $("band-g").hidden = d.mode === "grey";
    $("band-b").hidden = d.mode === "grey";
    applyStretchMode($("stretch").value);
  }

  // Fill lo / hi from the statistics (percentile or min-max) or keep the typed values.
  function applyStretchMode(mode) {
    const d = state.display;
    d.stretch = mode;
    $("stretch").value = mode;
    if (mode !== "custom" || d.lo.length !== d.bands.length) {
      d.lo = d.bands.map((b) => statFor(b, mode === "minmax" ? "min" : "p2"));
      d.hi = d.bands.map((b) => statFor(b, mode === "minmax" ? "max" : "p98"));
    }
    renderStretchTable();
    scheduleDraw();
  }

  function statFor(band, key) {
    const s = state.stats && state.stats.find((b) => b.index === band);
    return s ? s[key] : null;
  }

  function renderStretchTable() {
    const d = state.display;
    const names = d.mode === "grey" ? ["grey"] : ["R", "G", "B"];
    const rows = d.bands.map((b, i) => {
      const lo = el("input", { type: "number", step: "any", value: fmtStretch(d.lo[i]), "aria-label": `${names[i]} low` });
      const hi = el("input", { type: "number", step: "any", value: fmtStretch(d.hi[i]), "aria-label": `${names[i]} high` });
      const onChange = () => {
        d.lo[i] = lo.value === "" ? null : Number(lo.value);
        d.hi[i] = hi.value === "" ? null : Number(hi.value);
        d.stretch = "custom";
        $("stretch").value = "custom";
        scheduleDraw();
      };
      lo.addEventListener("change", onChange);
      hi.addEventListener("change", onChange);
      return el("tr", {}, el("td", { text: `${names[i]} (${b})` }), el("td", {}, lo), el("td", { text: "–" }), el("td", {}, hi));
    });
    $("stretch-table").replaceChildren(...rows);
  }

  // The query string of a tile: the bands and, when known, the stretch per band.
  function tileQuery() {
    const d = state.display;
    let q = `bands=${d.bands.join(",")}`;
    const known = (a) => a.length === d.bands.length && a.every((v) => v !== null && Number.isFinite(Number(v)));
    if (known(d.lo) && known(d.hi)) q += `&lo=${d.lo.map(fmtStretch).join(",")}&hi=${d.hi.map(fmtStretch).join(",")}`;
    return q;
  }

  function renderClasses() {
    const list = $("class-list");
    const classes = state.project ? state.project.classes || [] : [];
    if (!classes.some((c) => c.name === state.className)) state.className = classes.length ? classes[0].name : null;
    list.replaceChildren(
      ...classes.map((c, i) =>
        el(
          "button",
          { type: "button", dataset: { class: c.name }, title: `class ${c.name} (value ${c.value})`, onclick: () => selectClass(c.name) },
          el("span", { class: "swatch", style: `background:${c.color}` }),
          el("span", { class: "key", text: i < 9 ? String(i + 1) : " " }),
          el("span", { class: "name", text: c.name }),
          el("span", { class: "count" })
        )
      )
    );
    selectClass(state.className);
  }

  function selectClass(name) {
    state.className = name;
    for (const b of $("class-list").querySelectorAll("button")) {
      const on = b.dataset.class === name;
      b.classList.toggle("active", on);
      b.setAttribute("aria-pressed", on ? "true" : "false");
    }
  }

  function updateClassCounts() {
    const counts = {};
    for (const r of state.rois) counts[r.class_name] = (counts[r.class_name] || 0) + 1;
    for (const b of $("class-list").querySelectorAll("button")) {
      const n = counts[b.dataset.class] || 0;
      b.querySelector(".count").textContent = n ? String(n) : "";
    }
    $("roi-count").textContent = state.scene ? `${state.rois.length} ROIs on this scene` : "";
  }

  function selectTool(tool) {
    if (state.drawing && tool !== state.tool) state.drawing = null;
    state.tool = tool;
    for (const b of document.querySelectorAll(".tools button")) {
      const on = b.dataset.tool === tool;
      b.classList.toggle("active", on);
      b.setAttribute("aria-pressed", on ? "true" : "false");
    }
    const map = $("map");
    map.classList.toggle("tool-pan", tool === "pan");
    map.classList.toggle("tool-select", tool === "select");
    $("status-tool").textContent = tool;
    scheduleDraw();
  }

  // ------------------------------------------------------------------
  // 4. The view transform: screen = scene * scale + offset (CSS pixels)
  // ------------------------------------------------------------------

  const canvas = $("map");
  const ctx = canvas.getContext("2d");
  let cssWidth = 1;
  let cssHeight = 1;

  function sceneToScreen(x, y) {
    const v = state.view;
    return [x * v.scale + v.ox, y * v.scale + v.oy];
  }

  function screenToScene(px, py) {
    const v = state.view;
    return [(px - v.ox) / v.scale, (py - v.oy) / v.scale];
  }

  // The coarsest level: the first at which the whole scene fits in one tile.
  function maxLevel() {
    const s = state.scene;
    if (!s) return 0;
    const side = Math.max(s.width, s.height);
    return side > TILE ? Math.ceil(Math.log2(side / TILE)) : 0;
  }

  // The level whose pixels are about one screen pixel: 1/2^Z >= scale.
  function currentLevel() {
    return clamp(Math.floor(Math.log2(1 / state.view.scale)), 0, maxLevel());
  }

  function fitScale() {
    const s = state.scene;
    if (!s) return 1;
    return Math.min(cssWidth / s.width, cssHeight / s.height) * 0.96;
  }

  function fitView() {
    const s = state.scene;
    if (!s) return;
    const scale = fitScale();
    state.view = { scale, ox: (cssWidth - s.width * scale) / 2, oy: (cssHeight - s.height * scale) / 2 };
    viewChanged();
  }

  function zoomAt(px, py, factor) {
    const v = state.view;
    const minScale = Math.min(fitScale() / 4, 1);
    const scale = clamp(v.scale * factor, minScale, 64);
    const [sx, sy] = screenToScene(px, py);
    state.view = { scale, ox: px - sx * scale, oy: py - sy * scale };
    viewChanged();
  }

  function centreOn(x, y, scale) {
    const s = scale || state.view.scale;
    state.view = { scale: s, ox: cssWidth / 2 - x * s, oy: cssHeight / 2 - y * s };
    viewChanged();
  }

  // The visible part of the scene in full-resolution pixels (what the live model predicts).
  function visibleWindow() {
    const s = state.scene;
    const [x0, y0] = screenToScene(0, 0);
    const [x1, y1] = screenToScene(cssWidth, cssHeight);
    const x = clamp(Math.floor(x0), 0, s.width);
    const y = clamp(Math.floor(y0), 0, s.height);
    const right = clamp(Math.ceil(x1), 0, s.width);
    const bottom = clamp(Math.ceil(y1), 0, s.height);
    return { x, y, width: right - x, height: bottom - y, level: currentLevel() };
  }

  function viewChanged() {
    updateZoomStatus();
    scheduleDraw();
    scheduleLive(LIVE_VIEW_DELAY_MS);
  }

  function updateZoomStatus() {
    const scale = state.view.scale;
    const ratio = scale >= 1 ? `${fmtNum(scale, 2)}:1` : `1:${fmtNum(1 / scale, 2)}`;
    $("status-zoom").textContent = state.scene ? `zoom ${ratio} (level ${currentLevel()}/${maxLevel()})` : "";
  }

  function updatePositionStatus(px, py) {
    const s = state.scene;
    if (!s) return;
    const [x, y] = screenToScene(px, py);
    let text = `col ${fmt2(x)} row ${fmt2(y)}`;
    const t = s.transform;
    if (Array.isArray(t) && t.length === 6) {
      const mx = t[0] + x * t[1] + y * t[2];
      const my = t[3] + x * t[4] + y * t[5];
      text += ` | x ${fmt2(mx)} y ${fmt2(my)} ${s.crs ? "(CRS)" : "(no CRS)"}`;
    }
    if (x < 0 || y < 0 || x >= s.width || y >= s.height) text += " (outside)";
    $("status-pos").textContent = text;
  }

  function resizeCanvas() {
    const rect = canvas.getBoundingClientRect();
    const dpr = window.devicePixelRatio || 1;
    const firstSize = cssWidth <= 1;
    cssWidth = Math.max(1, rect.width);
    cssHeight = Math.max(1, rect.height);
    canvas.width = Math.round(cssWidth * dpr);
    canvas.height = Math.round(cssHeight * dpr);
    if (firstSize && state.scene) fitView();
    drawNow();
  }

  // ------------------------------------------------------------------
  // 5. Tiles and drawing the map
  // ------------------------------------------------------------------

  // A tile layer: an LRU of tile images. A Map keeps insertion order, so
  // re-inserting on use moves an entry to the end and the first entry is the
  // least recently used. `key(z, x, y)` names a tile (it changes with what the
  // tile shows: scene, bands, stretch, job), `url(z, x, y)` fetches it.
  function tileLayer(name, max, key, url) {
    const cache = new Map(); // key -> {img, status: "loading"|"ok"|"failed", failedAt, z}

    function get(k) {
      const t = cache.get(k);
      if (t) {
        cache.delete(k);
        cache.set(k, t);
      }
      return t;
    }

    function request(z, x, y) {
      const k = key(z, x, y);
      const t = get(k);
      if (t && (t.status !== "failed" || performance.now() - t.failedAt < TILE_RETRY_MS)) return t;
      const img = new Image();
      const entry = { img, status: "loading", failedAt: 0, z };
      img.onload = () => {
        entry.status = "ok";
        scheduleDraw();
      };
      img.onerror = () => {
        entry.status = "failed";
        entry.failedAt = performance.now();
        checkTileFailure(`${name} tile ${z}/${x}/${y}`, url(z, x, y));
      };
      img.src = url(z, x, y);
      cache.set(k, entry);
      evict();
      return entry;
    }

    function stop(t) {
      if (t.status !== "loading") return;
      t.img.onload = null;
      t.img.onerror = null;
      t.img.src = ""; // stop the download
    }

    function evict() {
      while (cache.size > max) {
        const [k, t] = cache.entries().next().value;
        stop(t);
        cache.delete(k);
      }
    }

    // Drop downloads of tiles that scrolled out of view before they arrived.
    function cancelInvisible(visible) {
      for (const [k, t] of cache) {
        if (t.status === "loading" && !visible.has(k)) {
          stop(t);
          cache.delete(k);
        }
      }
    }

    function clear() {
      for (const t of cache.values()) stop(t);
      cache.clear();
    }

    // Cached tile (z, x, y) when it has arrived, without touching the LRU order.
    function ready(z, x, y) {
      const t = cache.get(key(z, x, y));
      return t && t.status === "ok" ? t : null;
    }

    return { name, cache, key, request, cancelInvisible, clear, ready };
  }

  // An <img> cannot read the error, so ask once in a while with fetch: a lost
  // cookie shows the sign-in overlay, a server error shows its message.
  let lastTileCheck = 0;
  function checkTileFailure(what, url) {
    const now = performance.now();
    if (state.signedOut || now - lastTileCheck < TILE_RETRY_MS) return;
    lastTileCheck = now;
    api("GET", url).catch((err) => showError(what, err));
  }

  // The scene's image in the chosen bands and stretch.
  const imageTiles = tileLayer(
    "image",
    TILE_CACHE_MAX,
    (z, x, y) => `${sceneKey()}|${tileQuery()}|${z}/${x}/${y}`,
    (z, x, y) => `${scenePath()}/tiles/${z}/${x}/${y}.png?${tileQuery()}`
  );

  // The label map of the last predict job on this scene (its output 0).
  const predictionTiles = tileLayer(
    "prediction",
    PREDICTION_CACHE_MAX,
    (z, x, y) => `${state.predict.layer ? state.predict.layer.jobId : ""}|${z}/${x}/${y}`,
    (z, x, y) => `/api/jobs/${enc(state.predict.layer ? state.predict.layer.jobId : "")}/outputs/0/tiles/${z}/${x}/${y}.png`
  );

  // Scene pixel range a tile covers.
  function tileBounds(z, x, y) {
    const s = state.scene;
    const step = TILE * 2 ** z;
    const x0 = x * step;
    const y0 = y * step;
    return [x0, y0, Math.min(x0 + step, s.width), Math.min(y0 + step, s.height)];
  }

  // The tiles of `layer` that cover the view at the current level. `smooth`:
  // resample when zoomed out (an image), never for class colours (a label map).
  function drawTiles(layer, opacity, smooth) {
    const s = state.scene;
    const z = currentLevel();
    const step = TILE * 2 ** z;
    const [vx0, vy0] = screenToScene(0, 0);
    const [vx1, vy1] = screenToScene(cssWidth, cssHeight);
    const tx0 = Math.max(0, Math.floor(vx0 / step));
    const ty0 = Math.max(0, Math.floor(vy0 / step));
    const tx1 = Math.min(Math.ceil(s.width / step) - 1, Math.floor(vx1 / step));
    const ty1 = Math.min(Math.ceil(s.height / step) - 1, Math.floor(vy1 / step));
    const visible = new Set();
    ctx.imageSmoothingEnabled = smooth && state.view.scale < 1;
    ctx.globalAlpha = opacity;
    for (let ty = ty0; ty <= ty1; ty++) {
      for (let tx = tx0; tx <= tx1; tx++) {
        visible.add(layer.key(z, tx, ty));
        const t = layer.request(z, tx, ty);
        if (t.status === "ok") drawTileImage(t.img, z, tx, ty, tileBounds(z, tx, ty));
        else drawFallback(layer, z, tx, ty);
      }
    }
    ctx.globalAlpha = 1;
    layer.cancelInvisible(visible);
  }

  // Draw the scene rectangle `b` (x0, y0, x1, y1) from tile image (z, tx, ty).
  function drawTileImage(img, z, tx, ty, b) {
    const f = 2 ** z;
    const [ox, oy] = tileBounds(z, tx, ty);
    const sx = (b[0] - ox) / f;
    const sy = (b[1] - oy) / f;
    const sw = Math.min((b[2] - b[0]) / f, img.naturalWidth - sx);
    const sh = Math.min((b[3] - b[1]) / f, img.naturalHeight - sy);
    if (sw <= 0 || sh <= 0) return;
    // Rounded screen edges: neighbouring tiles meet without hairline seams.
    const [px0, py0] = sceneToScreen(b[0], b[1]);
    const [px1, py1] = sceneToScreen(b[0] + sw * f, b[1] + sh * f);
    const x0 = Math.round(px0);
    const y0 = Math.round(py0);
    ctx.drawImage(img, sx, sy, sw, sh, x0, y0, Math.round(px1) - x0, Math.round(py1) - y0);
  }

  // While tile (z, x, y) loads, show the same area from a coarser cached level.
  function drawFallback(layer, z, tx, ty) {
    const b = tileBounds(z, tx, ty);
    for (let zz = z + 1; zz <= maxLevel(); zz++) {
      const k = zz - z;
      const px = tx >> k;
      const py = ty >> k;
      const t = layer.ready(zz, px, py);
      if (t) {
        drawTileImage(t.img, zz, px, py, b);
        return;
      }
    }
  }

  // The prediction layer is shown when a predict job of this scene succeeded.
  function predictionShown() {
    const p = state.predict.layer;
    const layer = state.layers.prediction;
    return !!(p && p.sceneKey === sceneKey() && layer.visible && layer.opacity > 0);
  }

  function drawOverlays() {
    const o = state.live.overlay;
    if (!o || o.sceneKey !== sceneKey()) return;
    const [px0, py0] = sceneToScreen(o.x, o.y);
    const w = o.width * state.view.scale;
    const h = o.height * state.view.scale;
    ctx.imageSmoothingEnabled = false; // class colours must stay exact
    for (const name of ["labels", "uncertainty"]) {
      const layer = state.layers[name];
      const img = o[name];
      if (!layer.visible || layer.opacity <= 0 || !img || !img.complete || !img.naturalWidth) continue;
      ctx.globalAlpha = layer.opacity;
      ctx.drawImage(img, px0, py0, w, h);
    }
    ctx.globalAlpha = 1;
  }

  function drawSuggestions() {
    if (!state.suggestions.length) return;
    ctx.save();
    ctx.lineWidth = 2;
    ctx.font = "bold 12px system-ui, sans-serif";
    ctx.textBaseline = "top";
    state.suggestions.forEach((sg, i) => {
      const [x0, y0] = sceneToScreen(sg.x, sg.y);
      const w = sg.width * state.view.scale;
      const h = sg.height * state.view.scale;
      ctx.setLineDash([6, 4]);
      ctx.strokeStyle = "rgba(0,0,0,0.6)";
      ctx.strokeRect(x0 + 1, y0 + 1, w, h);
      ctx.strokeStyle = i === state.suggestionIndex ? "#ffe600" : "#ffd000";
      ctx.lineWidth = i === state.suggestionIndex ? 3 : 2;
      ctx.strokeRect(x0, y0, w, h);
      ctx.setLineDash([]);
      const label = String(i + 1);
      const tw = ctx.measureText(label).width + 6;
      ctx.fillStyle = "#ffd000";
      ctx.fillRect(x0, y0, tw, 15);
      ctx.fillStyle = "#000";
      ctx.fillText(label, x0 + 3, y0 + 1);
    });
    ctx.restore();
  }

  let drawPending = false;

  function scheduleDraw() {
    if (drawPending) return;
    drawPending = true;
    requestAnimationFrame(() => {
      drawPending = false;
      drawNow();
    });
  }

  function drawNow() {
    const dpr = canvas.width / cssWidth;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    if (!state.scene) return;
    // The scene's outline, so an empty or transparent scene still shows where it is.
    const [sx0, sy0] = sceneToScreen(0, 0);
    ctx.strokeStyle = "rgba(255,255,255,0.25)";
    ctx.lineWidth = 1;
    ctx.strokeRect(sx0 - 0.5, sy0 - 0.5, state.scene.width * state.view.scale + 1, state.scene.height * state.view.scale + 1);
    // Bottom to top: image, prediction, live labels and uncertainty, suggestions, ROIs.
    if (state.layers.image.visible && state.layers.image.opacity > 0) drawTiles(imageTiles, state.layers.image.opacity, true);
    else imageTiles.cancelInvisible(new Set());
    if (predictionShown()) drawTiles(predictionTiles, state.layers.prediction.opacity, false);
    else predictionTiles.cancelInvisible(new Set());
    drawOverlays();
    drawSuggestions();
    if (state.layers.rois.visible) drawRois();
    drawInProgress();
  }

  // ------------------------------------------------------------------
  // 6. ROIs: WKT, drawing, hit tests, editing
  // ------------------------------------------------------------------

  // Geometry kept as {type, points: [[x,y]], lines: [[[x,y]...]], polygons: [[ring...]]}
  // with polygon rings stored open (the closing vertex is added back in WKT).
  function parseWkt(wkt) {
    const geom = { type: "", points: [], lines: [], polygons: [] };
    const m = /^\s*([A-Za-z]+)\s*(?:[ZM]{1,2}\s*)?(.*)$/s.exec(wkt || "");
    if (!m) return geom;
    geom.type = m[1].toUpperCase();
    const body = m[2].trim();
    if (!body || /^EMPTY$/i.test(body)) return geom;
    const num = "[-+]?(?:\\d+\\.?\\d*|\\.\\d+)(?:[eE][-+]?\\d+)?";
    const coord = new RegExp(`(${num})\\s+(${num})(?:\\s+${num}){0,2}`, "g");
    let nested;
    try {
      const json = body.replace(coord, (_, a, b) => `[${Number(a)},${Number(b)}]`).replace(/\(/g, "[").replace(/\)/g, "]");
      nested = JSON.parse(json);
    } catch (_) {
      return geom;
    }
    const open = (ring) => {
      const r = ring.slice();
      if (r.length > 1 && r[0][0] === r[r.length - 1][0] && r[0][1] === r[r.length - 1][1]) r.pop();
      return r;
    };
    switch (geom.type) {
      case "POINT":
        geom.points = [nested[0]];
        break;
      case "MULTIPOINT":
        geom.points = nested.map((p) => (typeof p[0] === "number" ? p : p[0]));
        break;
      case "LINESTRING":
        geom.lines = [nested];
        break;
      case "MULTILINESTRING":
        geom.lines = nested;
        break;
      case "POLYGON":
        geom.polygons = [nested.map(open)];
        break;
      case "MULTIPOLYGON":
        geom.polygons = nested.map((poly) => poly.map(open));
        break;
      default:
        break; // GEOMETRYCOLLECTION and others: listed, not drawn
    }
    return geom;
  }

  function toWkt(geom) {
    const c = (p) => `${fmt2(p[0])} ${fmt2(p[1])}`;
    const line = (pts) => `(${pts.map(c).join(", ")})`;
    const ring = (pts) => line([...pts, pts[0]]);
    const poly = (rings) => `(${rings.map(ring).join(", ")})`;
    switch (geom.type) {
      case "POINT":
        return `POINT (${c(geom.points[0])})`;
      case "MULTIPOINT":
        return `MULTIPOINT (${geom.points.map((p) => `(${c(p)})`).join(", ")})`;
      case "LINESTRING":
        return `LINESTRING ${line(geom.lines[0])}`;
      case "MULTILINESTRING":
        return `MULTILINESTRING (${geom.lines.map(line).join(", ")})`;
      case "POLYGON":
        return `POLYGON ${poly(geom.polygons[0])}`;
      case "MULTIPOLYGON":
        return `MULTIPOLYGON (${geom.polygons.map(poly).join(", ")})`;
      default:
        throw new Error(`cannot write a ${geom.type} geometry`);
    }
  }

  function withGeom(roi) {
    roi.geom = parseWkt(roi.wkt);
    return roi;
  }

  async function loadRois() {
    if (!state.scene) return;
    const key = sceneKey();
    try {
      const data = await api("GET", `${scenePath()}/rois`);
      if (key !== sceneKey() || opQueueBusy || vertexDrag) return; // stale or mid-edit
      const signature = (rois) => rois.map((r) => r.id).sort().join(",");
      const before = signature(state.rois);
      state.rois = (data.rois || []).map(withGeom);
      if (!state.rois.some((r) => r.id === state.selectedId)) state.selectedId = null;
      updateClassCounts();
      updateSelectionButtons();
      scheduleDraw();
      // ROIs imported from elsewhere change what the live model learns.
      if (before !== signature(state.rois)) scheduleLive(LIVE_EDIT_DELAY_MS);
    } catch (err) {
      showError("loading ROIs", err);
    }
  }

  function roiWidth(roi) {
    return Math.max(1, Number(roi.width) || 1);
  }

  function drawRois() {
    ctx.save();
    ctx.globalAlpha = state.layers.rois.opacity;
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    for (const roi of state.rois) drawRoi(roi, roi.id === state.selectedId);
    ctx.restore();
  }

  function tracePath(pts, close) {
    ctx.beginPath();
    pts.forEach((p, i) => {
      const [x, y] = sceneToScreen(p[0], p[1]);
      if (i === 0) ctx.moveTo(x, y);
      else ctx.lineTo(x, y);
    });
    if (close) ctx.closePath();
  }

  function drawRoi(roi, selected) {
    const g = roi.geom;
    const color = classColor(roi.class_name);
    const scale = state.view.scale;
    const w = Math.max(1.5, roiWidth(roi) * scale);
    for (const poly of g.polygons) {
      ctx.beginPath();
      for (const ring of poly) {
        ring.forEach((p, i) => {
          const [x, y] = sceneToScreen(p[0], p[1]);
          if (i === 0) ctx.moveTo(x, y);
          else ctx.lineTo(x, y);
        });
        ctx.closePath();
      }
      ctx.fillStyle = color;
      const alpha = ctx.globalAlpha;
      ctx.globalAlpha = alpha * 0.35;
      ctx.fill("evenodd");
      ctx.globalAlpha = alpha;
      strokeHighlight(selected ? 5 : 3.5, selected ? "#ffffff" : "rgba(0,0,0,0.45)");
      ctx.strokeStyle = color;
      ctx.lineWidth = 2;
      ctx.stroke();
    }
    for (const line of g.lines) {
      tracePath(line, false);
      strokeHighlight(w + (selected ? 5 : 2), selected ? "#ffffff" : "rgba(0,0,0,0.45)");
      ctx.strokeStyle = color;
      ctx.lineWidth = w;
      ctx.stroke();
    }
    for (const p of g.points) {
      const [x, y] = sceneToScreen(p[0], p[1]);
      const r = Math.max(4, (roiWidth(roi) * scale) / 2);
      ctx.beginPath();
      ctx.arc(x, y, r, 0, Math.PI * 2);
      strokeHighlight(selected ? 5 : 2.5, selected ? "#ffffff" : "rgba(255,255,255,0.85)");
      ctx.fillStyle = color;
      ctx.fill();
      ctx.strokeStyle = "rgba(0,0,0,0.7)";
      ctx.lineWidth = 1;
      ctx.stroke();
    }
    if (selected) drawHandles(roi);
  }

  // A halo under a shape's stroke: dark for contrast, white when selected.
  function strokeHighlight(width, color) {
    ctx.save();
    ctx.strokeStyle = color;
    ctx.lineWidth = width;
    ctx.setLineDash([]);
    ctx.stroke();
    ctx.restore();
  }

  function drawHandles(roi) {
    ctx.save();
    ctx.globalAlpha = 1;
    for (const v of vertices(roi.geom)) {
      const [x, y] = sceneToScreen(v.arr[v.i][0], v.arr[v.i][1]);
      ctx.fillStyle = "#ffffff";
      ctx.strokeStyle = "#000000";
      ctx.lineWidth = 1;
      ctx.fillRect(x - 4, y - 4, 8, 8);
      ctx.strokeRect(x - 4, y - 4, 8, 8);
    }
    ctx.restore();
  }

  // The shape being drawn, with a rubber band to the cursor.
  function drawInProgress() {
    const d = state.drawing;
    if (!d || !d.pts.length) return;
    const pts = state.hover ? [...d.pts, state.hover] : d.pts;
    const color = classColor(state.className);
    ctx.save();
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    tracePath(pts, d.kind === "polygon");
    if (d.kind === "polygon") {
      ctx.fillStyle = color;
      ctx.globalAlpha = 0.25;
      ctx.fill();
      ctx.globalAlpha = 1;
      ctx.strokeStyle = color;
      ctx.lineWidth = 2;
    } else {
      ctx.strokeStyle = color;
      ctx.globalAlpha = 0.8;
      ctx.lineWidth = Math.max(1.5, state.brushWidth * state.view.scale);
    }
    ctx.setLineDash([5, 3]);
    ctx.stroke();
    ctx.setLineDash([]);
    ctx.globalAlpha = 1;
    for (const p of d.pts) {
      const [x, y] = sceneToScreen(p[0], p[1]);
      ctx.fillStyle = "#fff";
      ctx.strokeStyle = "#000";
      ctx.fillRect(x - 3, y - 3, 6, 6);
      ctx.strokeRect(x - 3, y - 3, 6, 6);
    }
    ctx.restore();
  }

  // Every vertex of a geometry as {arr, i}, so a drag can move it in place.
  function vertices(g) {
    const out = [];
    g.points.forEach((_, i) => out.push({ arr: g.points, i }));
    for (const line of g.lines) line.forEach((_, i) => out.push({ arr: line, i }));
    for (const poly of g.polygons) for (const ring of poly) ring.forEach((_, i) => out.push({ arr: ring, i }));
    return out;
  }

  function cloneGeom(g) {
    return {
      type: g.type,
      points: g.points.map((p) => [...p]),
      lines: g.lines.map((l) => l.map((p) => [...p])),
      polygons: g.polygons.map((poly) => poly.map((r) => r.map((p) => [...p]))),
    };
  }

  function distToSegment(p, a, b) {
    const dx = b[0] - a[0];
    const dy = b[1] - a[1];
    const len2 = dx * dx + dy * dy;
    let t = len2 ? ((p[0] - a[0]) * dx + (p[1] - a[1]) * dy) / len2 : 0;
    t = clamp(t, 0, 1);
    return Math.hypot(p[0] - (a[0] + t * dx), p[1] - (a[1] + t * dy));
  }

  function pointInRing(p, ring) {
    let inside = false;
    for (let i = 0, j = ring.length - 1; i < ring.length; j = i++) {
      const [xi, yi] = ring[i];
      const [xj, yj] = ring[j];
      if (yi > p[1] !== yj > p[1] && p[0] < ((xj - xi) * (p[1] - yi)) / (yj - yi) + xi) inside = !inside;
    }
    return inside;
  }

  function hitRoi(roi, p) {
    const g = roi.geom;
    const tol = HIT_TOLERANCE_PX / state.view.scale;
    const half = roiWidth(roi) / 2;
    for (const q of g.points) if (Math.hypot(p[0] - q[0], p[1] - q[1]) <= half + tol) return true;
    for (const line of g.lines) {
      for (let i = 1; i < line.length; i++) if (distToSegment(p, line[i - 1], line[i]) <= half + tol) return true;
      if (line.length === 1 && Math.hypot(p[0] - line[0][0], p[1] - line[0][1]) <= half + tol) return true;
    }
    for (const poly of g.polygons) {
      // Even-odd over all rings: a point in a hole is outside.
      let inside = false;
      for (const ring of poly) if (pointInRing(p, ring)) inside = !inside;
      if (inside) return true;
      for (const ring of poly)
        for (let i = 0; i < ring.length; i++) if (distToSegment(p, ring[i], ring[(i + 1) % ring.length]) <= tol) return true;
    }
    return false;
  }

  // The top-most ROI under a scene point (drawn last = on top).
  function roiAt(p) {
    for (let i = state.rois.length - 1; i >= 0; i--) if (hitRoi(state.rois[i], p)) return state.rois[i];
    return null;
  }

  function vertexAt(roi, px, py) {
    let best = null;
    let bestD = HIT_TOLERANCE_PX + 2;
    for (const v of vertices(roi.geom)) {
      const [x, y] = sceneToScreen(v.arr[v.i][0], v.arr[v.i][1]);
      const d = Math.hypot(px - x, py - y);
      if (d <= bestD) {
        best = v;
        bestD = d;
      }
    }
    return best;
  }

  function selectedRoi() {
    return state.rois.find((r) => r.id === state.selectedId) || null;
  }

  function updateSelectionButtons() {
    $("delete-roi").disabled = !selectedRoi();
  }

  function roiBody(roi) {
    return { class_name: roi.class_name, split: roi.split, wkt: roi.wkt, width: roi.width || 0 };
  }

  // --- server calls for ROIs, serialized so undo / redo never interleave ---

  let opQueue = Promise.resolve();
  let opQueueBusy = 0;

  function enqueue(what, fn) {
    opQueueBusy++;
    const run = opQueue.then(fn).catch((err) => showError(what, err)).finally(() => {
      opQueueBusy--;
      updateClassCounts();
      updateSelectionButtons();
      updateUndoButtons();
      scheduleDraw();
    });
    opQueue = run;
    return run;
  }

  // The id a ROI has now, following re-posts by undo / redo.
  function resolveId(id) {
    let cur = id;
    const seen = new Set();
    while (state.idMap.has(cur) && !seen.has(cur)) {
      seen.add(cur);
      cur = state.idMap.get(cur);
    }
    return cur;
  }

  async function postRoi(body) {
    const roi = withGeom(await api("POST", `${scenePath()}/rois`, body));
    state.rois.push(roi);
    roiEdited();
    return roi;
  }

  async function deleteRoi(id) {
    const current = resolveId(id);
    try {
      await api("DELETE", `${scenePath()}/rois/${enc(current)}`);
    } catch (err) {
      // Deleted elsewhere (sipctl) already: what this delete wanted is true.
      if (!(err instanceof ApiError && err.status === 404)) throw err;
    }
    state.rois = state.rois.filter((r) => r.id !== current);
    if (state.selectedId === current) state.selectedId = null;
    roiEdited();
  }

  // Post `roi` again (undo of a delete, redo of a create): later ops follow its new id.
  async function repost(roi) {
    const fresh = await postRoi(roiBody(roi));
    const old = resolveId(roi.id);
    if (old !== fresh.id) state.idMap.set(old, fresh.id);
    if (state.selectedId === old) state.selectedId = fresh.id;
    return fresh;
  }

  function roiEdited() {
    updateClassCounts();
    scheduleLive(LIVE_EDIT_DELAY_MS);
    scheduleDraw();
  }

  function createRoi(geom) {
    if (!state.className) {
      showMessage("Pick a class first (the class list or keys 1–9).", "info");
      return;
    }
    const body = {
      class_name: state.className,
      split: state.split,
      wkt: toWkt(geom),
      width: geom.type === "POLYGON" ? 0 : state.brushWidth,
    };
    enqueue("adding the ROI", async () => {
      const roi = await postRoi(body);
      pushUndo({ op: "create", roi });
    });
  }

  function deleteSelected() {
    const roi = selectedRoi();
    if (!roi) return;
    enqueue("deleting the ROI", async () => {
      await deleteRoi(roi.id);
      pushUndo({ op: "delete", roi });
    });
  }

  // A moved vertex: the server has no update, so delete the old and post the new.
  function commitMove(oldRoi, geom) {
    const body = { ...roiBody(oldRoi), wkt: toWkt(geom) };
    enqueue("moving the ROI", async () => {
      await deleteRoi(oldRoi.id);
      let fresh;
      try {
        fresh = await postRoi(body);
      } catch (err) {
        // Put the old one back rather than lose it.
        await repost(oldRoi);
        throw err;
      }
      state.selectedId = fresh.id;
      pushUndo({ op: "move", before: oldRoi, after: fresh });
    });
  }

  function finishDrawing() {
    const d = state.drawing;
    if (!d) return;
    const need = d.kind === "polygon" ? 3 : 2;
    // Drop repeated clicks on one spot (a double click adds its position twice).
    const pts = d.pts.filter((p, i) => i === 0 || Math.hypot(p[0] - d.pts[i - 1][0], p[1] - d.pts[i - 1][1]) > 1e-9);
    if (pts.length < need) {
      showMessage(`A ${d.kind} needs at least ${need} vertices (${pts.length} so far); Esc cancels.`, "info");
      return;
    }
    state.drawing = null;
    const geom =
      d.kind === "polygon"
        ? { type: "POLYGON", points: [], lines: [], polygons: [[pts]] }
        : { type: "LINESTRING", points: [], lines: [pts], polygons: [] };
    createRoi(geom);
    scheduleDraw();
  }

  function cancelDrawing() {
    if (state.drawing) {
      state.drawing = null;
      scheduleDraw();
    } else if (state.selectedId) {
      state.selectedId = null;
      updateSelectionButtons();
      scheduleDraw();
    }
  }

  // ------------------------------------------------------------------
  // 7. Undo / redo
  // ------------------------------------------------------------------

  function pushUndo(entry) {
    state.undo.push(entry);
    state.redo = [];
    updateUndoButtons();
  }

  function updateUndoButtons() {
    $("undo").disabled = state.readOnly || !state.undo.length;
    $("redo").disabled = state.readOnly || !state.redo.length;
  }

  // Undo and redo wait in the same queue as edits, so Ctrl+Z right after a click
  // undoes that click's ROI even while its POST is still on the way.
  function undo() {
    enqueue("undo", async () => {
      const entry = state.undo.pop();
      if (!entry) return;
      try {
        if (entry.op === "create") await deleteRoi(entry.roi.id);
        else if (entry.op === "delete") await repost(entry.roi);
        else if (entry.op === "move") {
          await deleteRoi(entry.after.id);
          await repost(entry.before);
        }
        state.redo.push(entry);
      } catch (err) {
        state.undo.push(entry);
        throw err;
      }
    });
  }

  function redo() {
    enqueue("redo", async () => {
      const entry = state.redo.pop();
      if (!entry) return;
      try {
        if (entry.op === "create") await repost(entry.roi);
        else if (entry.op === "delete") await deleteRoi(entry.roi.id);
        else if (entry.op === "move") {
          await deleteRoi(entry.before.id);
          await repost(entry.after);
        }
        state.undo.push(entry);
      } catch (err) {
        state.redo.push(entry);
        throw err;
      }
    });
  }

  // ------------------------------------------------------------------
  // 8. Live model and suggestions
  // ------------------------------------------------------------------

  function scheduleLive(delay) {
    if (!state.live.enabled || !state.scene) return;
    clearTimeout(state.live.timer);
    state.live.timer = setTimeout(() => sendLive(false), delay);
  }

  function loadImage(src) {
    return new Promise((resolve, reject) => {
      if (!src) {
        resolve(null);
        return;
      }
      const img = new Image();
      img.onload = () => resolve(img);
      img.onerror = () => reject(new Error("the server sent an image the browser cannot read"));
      img.src = src;
    });
  }

  // One request at a time: an edit during a request sends again when it returns.
  async function sendLive(suggest) {
    const live = state.live;
    if (!state.scene) return;
    if (live.inFlight) {
      live.pending = live.pending || !suggest;
      if (suggest) live.pendingSuggest = true;
      return;
    }
    const body = visibleWindow();
    if (body.width <= 0 || body.height <= 0) return; // the scene is out of view
    const key = sceneKey();
    live.inFlight = true;
    live.pending = false;
    $("live-status").classList.add("busy");
    try {
      const ans = await api("POST", `${scenePath()}/live`, body);
      if (key !== sceneKey()) return;
      await applyLive(ans, key);
      if (suggest) showSuggestions(ans.suggestions || []);
    } catch (err) {
      if (err instanceof ApiError && err.status === 409) {
        showMessage(err.message, "info", "live");
        $("live-status").textContent = "live: draw examples of two classes";
      } else {
        showError("live model", err);
      }
    } finally {
      live.inFlight = false;
      $("live-status").classList.remove("busy");
      if (live.pendingSuggest) {
        live.pendingSuggest = false;
        sendLive(true);
      } else if (live.pending && live.enabled) {
        sendLive(false);
      }
    }
  }

  async function applyLive(ans, key) {
    const [labels, uncertainty] = await Promise.all([loadImage(ans.labels), loadImage(ans.uncertainty)]);
    if (key !== sceneKey()) return;
    hideMessage("live"); // an earlier "draw two classes" no longer holds
    state.live.overlay = { sceneKey: key, x: ans.x, y: ans.y, width: ans.width, height: ans.height, labels, uncertainty };
    drawNow(); // the frame shows this answer before the revision says so
    state.live.revision += 1;
    const t = ans.timing && ans.timing.total_s;
    const n = (ans.classes || []).length;
    const status = $("live-status");
    status.textContent = `live ${t !== undefined ? fmtNum(t, 1) + " s" : "?"}, ${n} class${n === 1 ? "" : "es"}` +
      (ans.mean_uncertainty !== undefined ? `, uncertainty ${fmtNum(ans.mean_uncertainty, 2)}` : "");
    status.title = ans.train_pixels ? `train pixels: ${JSON.stringify(ans.train_pixels)}` : "";
    status.dataset.revision = String(state.live.revision);
  }

  function showSuggestions(list) {
    state.suggestions = list;
    state.suggestionIndex = -1;
    renderSuggestions();
    if (!list.length) showMessage("No suggestions: the live model is sure everywhere in view.", "info");
    scheduleDraw();
  }

  function renderSuggestions() {
    const ol = $("suggestions");
    ol.replaceChildren(
      ...state.suggestions.map((sg, i) =>
        el(
          "li",
          { class: i === state.suggestionIndex ? "current" : "" },
          el("button", {
            type: "button",
            text: `${sg.class_name || "?"} · unc ${fmtNum(sg.uncertainty, 2)} · (${Math.round(sg.x)}, ${Math.round(sg.y)}) ${Math.round(sg.width)}×${Math.round(sg.height)}`,
            onclick: () => goToSuggestion(i),
          })
        )
      )
    );
  }

  function goToSuggestion(i) {
    const n = state.suggestions.length;
    if (!n) return;
    state.suggestionIndex = ((i % n) + n) % n;
    const sg = state.suggestions[state.suggestionIndex];
    // Zoom so the box fills about a third of the view (never beyond 8:1).
    const scale = clamp(Math.min(cssWidth / (sg.width * 3), cssHeight / (sg.height * 3)), fitScale(), 8);
    centreOn(sg.x + sg.width / 2, sg.y + sg.height / 2, scale);
    renderSuggestions();
  }

  // ------------------------------------------------------------------
  // 9. Training, models, tests and predictions
  // ------------------------------------------------------------------

  async function startTraining() {
    if (!state.project) return;
    const body = { arch: $("train-arch").value };
    const epochs = parseInt($("train-epochs").value, 10);
    if (Number.isFinite(epochs) && epochs > 0) body.epochs = epochs;
    $("train").disabled = true; // one click, one job
    try {
      const job = await api("POST", `/api/projects/${enc(state.project.id)}/train`, body);
      state.chart = [];
      state.jobSeenStates = [];
      $("train-metrics").textContent = "";
      $("train-progress").textContent = "";
      delete $("train-progress").dataset.seen;
      drawChart();
      showJob(job);
      pollJob(job.id);
    } catch (err) {
      $("train").disabled = state.readOnly;
      showError("training", err);
    }
  }

  // Poll job `id` once a second until it ends. `slot` is what the page watches
  // it for ("train", "test", "predict"): a new job in a slot replaces the old
  // one's polling. `onUpdate(job)` gets every answer, `onEnd(job)` the final one.
  const jobWatched = {}; // slot -> the job id polled there
  function watchJob(slot, id, what, onUpdate, onEnd) {
    clearTimeout(state.jobTimers[slot]);
    jobWatched[slot] = id;
    state.jobTimers[slot] = setTimeout(async () => {
      try {
        const job = await api("GET", `/api/jobs/${enc(id)}`);
        if (jobWatched[slot] !== id) return; // replaced while this answer was on the way
        onUpdate(job);
        if (FINAL_STATES.has(job.state)) {
          onEnd(job);
          return;
        }
      } catch (err) {
        showError(what, err);
        if (err instanceof ApiError && (err.status === 404 || err.status === 401)) return;
      }
      if (jobWatched[slot] === id) watchJob(slot, id, what, onUpdate, onEnd);
    }, JOB_POLL_MS);
  }

  function pollJob(id) {
    watchJob("train", id, "training progress", showJob, (job) => {
      if (job.state === "SUCCEEDED") {
        loadModels();
        showMessage(`Training ${job.id} succeeded.`, "info");
      } else if (job.state === "FAILED") {
        showMessage(`Training ${job.id} failed: ${job.error || "no reason given"}`, "error");
      } else {
        showMessage(`Training ${job.id} cancelled.`, "info");
      }
    });
  }

  // A job's progress as short phrases: stage, percent, message, time left, error.
  function progressBits(job) {
    const p = job.progress;
    const bits = [];
    if (p) {
      if (p.stage) bits.push(p.stage);
      if (p.fraction !== undefined && p.fraction !== null) bits.push(`${Math.round(p.fraction * 100)}%`);
      if (p.message) bits.push(p.message);
      if (p.eta_seconds && !FINAL_STATES.has(job.state)) bits.push(`~${Math.round(p.eta_seconds)} s left`);
    }
    if (job.error) bits.push(`error: ${job.error}`);
    return bits;
  }

  const WAITING_TEXT = { QUEUED: "waiting for the worker", RUNNING: "starting" };

  function showJob(job) {
    state.job = job;
    const st = $("train-state");
    st.textContent = job.state;
    st.dataset.job = String(job.id);
    if (!state.jobSeenStates.includes(job.state)) state.jobSeenStates.push(job.state);
    st.dataset.seen = state.jobSeenStates.join(",");
    $("train").disabled = state.readOnly || !FINAL_STATES.has(job.state);
    $("train-cancel").disabled = FINAL_STATES.has(job.state);
    const p = job.progress;
    const bits = progressBits(job);
    const prog = $("train-progress");
    if (bits.length) {
      prog.textContent = bits.join(" · ");
      // Progress reported while the job ran (not only its final line).
      if (!FINAL_STATES.has(job.state)) prog.dataset.seen = "1";
    } else {
      prog.textContent = WAITING_TEXT[job.state] || "";
    }
    const m = (p && p.metrics) || {};
    const names = Object.keys(m);
    // The last metrics stay shown when the export stage reports none.
    if (names.length) {
      $("train-metrics").textContent = names
        .map((k) => `${k.replace(/_/g, " ")} ${Number.isInteger(m[k]) ? m[k] : fmtNum(m[k], 3)}`)
        .join(" · ");
    }
    if (names.length) {
      // One point per change (an epoch), not per poll: repeated polls would flatten the chart.
      const point = { loss: num(m.loss), valLoss: num(m.val_loss), acc: num(m.train_accuracy ?? m.accuracy), valAcc: num(m.val_accuracy) };
      const last = state.chart[state.chart.length - 1];
      if (!last || JSON.stringify(last) !== JSON.stringify(point)) state.chart.push(point);
      if (state.chart.length > 500) state.chart.shift();
      drawChart();
    }
  }

  // Seconds since 1970 (or an ISO string) as local date and time.
  function fmtTime(v) {
    if (v === null || v === undefined || v === "") return "";
    const d = typeof v === "number" ? new Date(v * 1000) : new Date(v);
    return Number.isNaN(d.getTime()) ? String(v) : d.toLocaleString();
  }

  function num(v) {
    return v === undefined || v === null || !Number.isFinite(Number(v)) ? null : Number(v);
  }

  // Loss (scaled to its own maximum) and accuracies (0-1) over the polls.
  function drawChart() {
    const c = $("train-chart");
    const g = c.getContext("2d");
    const W = c.width;
    const H = c.height;
    g.clearRect(0, 0, W, H);
    const data = state.chart;
    if (!data.length) return;
    const maxLoss = Math.max(1e-9, ...data.flatMap((d) => [d.loss ?? 0, d.valLoss ?? 0]));
    const series = [
      ["loss", "#d62728", (d) => (d.loss === null ? null : d.loss / maxLoss)],
      ["val loss", "#ff9896", (d) => (d.valLoss === null ? null : d.valLoss / maxLoss)],
      ["train acc", "#1f77b4", (d) => d.acc],
      ["val acc", "#2ca02c", (d) => d.valAcc],
    ];
    const pad = 4;
    const x = (i) => pad + (data.length === 1 ? 0 : (i * (W - 2 * pad)) / (data.length - 1));
    const y = (v) => H - pad - v * (H - 2 * pad - 12);
    g.font = "10px system-ui, sans-serif";
    let lx = pad;
    for (const [name, color, get] of series) {
      g.strokeStyle = color;
      g.lineWidth = 1.5;
      g.beginPath();
      let started = false;
      data.forEach((d, i) => {
        const v = get(d);
        if (v === null || v === undefined) return;
        if (!started) g.moveTo(x(i), y(v));
        else g.lineTo(x(i), y(v));
        started = true;
      });
      if (!started) continue;
      g.stroke();
      g.fillStyle = color;
      data.forEach((d, i) => {
        const v = get(d);
        if (v !== null && v !== undefined) g.fillRect(x(i) - 1.5, y(v) - 1.5, 3, 3);
      });
      g.fillStyle = color;
      g.fillText(name, lx, 10);
      lx += g.measureText(name).width + 10;
    }
  }

  async function cancelJob() {
    if (!state.job) return;
    try {
      showJob(await api("POST", `/api/jobs/${enc(state.job.id)}/cancel`, {}));
    } catch (err) {
      showError("cancelling", err);
    }
  }

  // The models table: one row per version with what compares them (architecture,
  // best validation accuracy, test OA and kappa; the best of each column in bold)
  // and a button that tests it. The predict select lists the same versions.
  async function loadModels() {
    const tbody = $("models").querySelector("tbody");
    const pid = state.project ? state.project.id : "";
    if (pid !== state.modelsProject) {
      // Another project: its versions are other models.
      state.modelsProject = pid;
      state.models = [];
      state.selectedModel = null;
      state.predictChosen = false;
      $("model-detail").replaceChildren();
    }
    if (!pid) {
      tbody.replaceChildren();
      renderPredictVersions();
      return;
    }
    try {
      const data = await api("GET", `/api/projects/${enc(pid)}/models`);
      if (!state.project || state.project.id !== pid) return; // another project meanwhile
      state.models = data.models || [];
    } catch (err) {
      showError("models", err);
      return;
    }
    const best = (get) => {
      const values = state.models.map(get).filter((v) => v !== null && v !== undefined && Number.isFinite(Number(v)));
      return values.length > 1 ? Math.max(...values.map(Number)) : null;
    };
    const columns = [
      (m) => m.best_val_accuracy,
      (m) => (m.evaluation ? m.evaluation.overall_accuracy : null),
      (m) => (m.evaluation ? m.evaluation.kappa : null),
    ];
    const bests = columns.map(best);
    tbody.replaceChildren(
      ...state.models.map((m) => {
        const cells = columns.map((get, i) => {
          const v = get(m);
          const on = bests[i] !== null && v !== null && v !== undefined && Number(v) === bests[i];
          return el("td", { class: on ? "best" : "", text: fmtNum(v, 3) });
        });
        const test = el("button", {
          type: "button",
          class: "test",
          text: "test",
          title: `Score version ${m.version} on the project's test ROIs`,
          dataset: { version: String(m.version) },
          onclick: (e) => {
            e.stopPropagation(); // the row's click shows details
            startTest(m.version);
          },
        });
        const row = el(
          "tr",
          { dataset: { version: String(m.version) }, title: "details", onclick: () => showModel(m) },
          el("td", { text: String(m.version) }),
          el("td", { text: m.arch || "" }),
          ...cells,
          el("td", {}, test)
        );
        if (String(m.version) === String(state.selectedModel)) row.classList.add("selected");
        return row;
      })
    );
    if (!state.models.length) tbody.append(el("tr", {}, el("td", { colspan: "6", class: "muted", text: "no models yet" })));
    updateTestButtons();
    renderPredictVersions();
    // The detail of the selected version shows its latest evaluation.
    const selected = state.models.find((m) => String(m.version) === String(state.selectedModel));
    if (selected) showModel(selected);
  }

  const PER_CLASS_FIELDS = ["precision", "recall", "f1", "iou", "support"];
  const FIELD_LABELS = { f1: "F1", iou: "IoU" };

  function showModel(m) {
    state.selectedModel = m.version;
    for (const tr of $("models").querySelectorAll("tbody tr")) tr.classList.toggle("selected", tr.dataset.version === String(m.version));
    const box = $("model-detail");
    box.dataset.version = String(m.version);
    const parts = [el("div", { text: `version ${m.version} · ${m.arch || ""} · ${fmtTime(m.created)}` })];
    if (m.name) parts.push(el("div", { class: "muted", text: m.name }));
    if (Array.isArray(m.classes) && m.classes.length) parts.push(el("div", { text: `classes: ${m.classes.join(", ")}` }));
    const ev = m.evaluation;
    if (!ev) {
      parts.push(el("div", { class: "muted", text: "no evaluation yet: its test button scores it on the test ROIs" }));
      box.replaceChildren(...parts);
      return;
    }
    parts.push(el("div", { class: "report-head", text: `test: overall accuracy ${fmtNum(ev.overall_accuracy)} · kappa ${fmtNum(ev.kappa)}` }));
    // per_class: a list of {value, name, precision, ...} (or, from older reports, an object by class name).
    const perRaw = ev.per_class || [];
    const per = Array.isArray(perRaw)
      ? perRaw.map((r, i) => [r.name ?? String(r.value ?? i + 1), r])
      : Object.entries(perRaw).map(([name, r]) => [name, r && typeof r === "object" ? r : { value: r }]);
    if (per.length) {
      const present = [...new Set(per.flatMap(([, r]) => Object.keys(r)))].filter((f) => f !== "name" && f !== "value");
      const fields = [...PER_CLASS_FIELDS.filter((f) => present.includes(f)), ...present.filter((f) => !PER_CLASS_FIELDS.includes(f))];
      const counted = (f) => f === "support" || /count|pixels/.test(f);
      const cell = (f, v) => (typeof v === "number" ? (counted(f) ? String(v) : fmtNum(v)) : String(v ?? "–"));
      const head = el("tr", {}, el("th", { text: "class" }), ...fields.map((f) => el("th", { text: FIELD_LABELS[f] || f.replace(/_/g, " ") })));
      const rows = per.map(([name, r]) => el("tr", {}, el("th", { text: name }), ...fields.map((f) => el("td", { text: cell(f, r[f]) }))));
      parts.push(el("table", { class: "per-class" }, head, ...rows));
    }
    const conf = ev.confusion_matrix || ev.confusion;
    if (Array.isArray(conf) && conf.length) {
      const names = ev.class_names || (m.classes || []).map((c) => (typeof c === "object" ? c.name : String(c)));
      const label = (i) => names[i] || String(i + 1);
      parts.push(el("div", { class: "muted", text: "confusion (rows: reference, columns: predicted)" }));
      const head = el("tr", {}, el("th", { text: "" }), ...conf[0].map((_, j) => el("th", { text: label(j) })));
      const rows = conf.map((row, i) =>
        el("tr", {}, el("th", { text: label(i) }), ...row.map((v, j) => el("td", { class: i === j ? "diag" : "", text: String(v) })))
      );
      parts.push(el("table", { class: "confusion" }, head, ...rows));
    }
    if (ev.pixels !== undefined) parts.push(el("div", { class: "muted", text: `${ev.pixels} test pixels${ev.unclassified ? `, ${ev.unclassified} unclassified` : ""}` }));
    box.replaceChildren(...parts);
  }

  // --- testing a version on the test ROIs ---

  function testRunning() {
    return !!(state.testJob && !FINAL_STATES.has(state.testJob.state));
  }

  function updateTestButtons() {
    for (const b of $("models").querySelectorAll("button.test")) b.disabled = state.readOnly || testRunning();
  }

  async function startTest(version) {
    if (!state.project || testRunning()) return;
    const pid = state.project.id;
    try {
      const job = await api("POST", `/api/projects/${enc(pid)}/models/${enc(version)}/test`, {});
      state.testJob = { id: job.id, version: String(version), project: pid, state: job.state };
      hideMessage("test");
      showTestJob(job);
      watchJob("test", job.id, "test progress", showTestJob, testEnded);
    } catch (err) {
      if (err instanceof ApiError && err.status === 409) {
        // No test ROIs (or a busy model): say what to do, without a code.
        showMessage(`Version ${version} cannot be tested: ${err.message}`, "error", "test");
      } else {
        showError(`testing version ${version}`, err);
      }
    }
  }

  function showTestJob(job) {
    const t = state.testJob;
    t.state = job.state;
    const box = $("test-state");
    const bits = progressBits(job);
    box.textContent = `test of v${t.version}: ${job.state}${bits.length ? " · " + bits.join(" · ") : ""}`;
    box.dataset.job = String(job.id);
    box.dataset.state = job.state;
    updateTestButtons();
  }

  async function testEnded(job) {
    const t = state.testJob;
    if (job.state === "SUCCEEDED") {
      if (!state.project || state.project.id !== t.project) return;
      state.selectedModel = t.version; // the detail then shows the new report
      await loadModels();
      const report = job.result && job.result.report;
      showMessage(
        `Test of version ${t.version} done` +
          (report ? `: overall accuracy ${fmtNum(report.overall_accuracy)}, kappa ${fmtNum(report.kappa)}` : "."),
        "info",
        "test"
      );
    } else if (job.state === "FAILED") {
      showMessage(`Test of version ${t.version} failed: ${job.error || "no reason given"}`, "error", "test");
    } else {
      showMessage(`Test of version ${t.version} cancelled.`, "info", "test");
    }
  }

  // --- predicting the scene with a version: the prediction layer ---

  // Versions latest first; the one the person picked stays picked.
  function renderPredictVersions() {
    const sel = $("predict-version");
    const keep = state.predictChosen ? sel.value : "";
    const models = [...state.models].sort((a, b) => Number(b.version) - Number(a.version));
    sel.replaceChildren(...models.map((m) => el("option", { value: String(m.version), text: `v${m.version} · ${m.arch || "?"}` })));
    if (!models.length) sel.append(el("option", { value: "", text: "(no models: train one)" }));
    else sel.value = models.some((m) => String(m.version) === keep) ? keep : String(models[0].version);
    updatePredictButton();
  }

  function predictRunning() {
    const job = state.predict.job;
    return !!(job && !FINAL_STATES.has(job.state));
  }

  function updatePredictButton() {
    $("predict").disabled = state.readOnly || predictRunning() || !state.scene || !$("predict-version").value;
  }

  async function startPredict() {
    const version = $("predict-version").value;
    if (!state.project || !state.scene || !version || predictRunning()) return;
    const p = state.predict;
    const asked = { sceneKey: sceneKey(), project: state.project.id, scene: state.scene.id, version };
    const sceneId = asked.scene;
    $("predict").disabled = true; // one click, one job
    try {
      const job = await api("POST", `${scenePath()}/predict`, { version });
      Object.assign(p, asked);
      const info = $("predict-info");
      info.textContent = `labelling ${sceneId} with version ${version}`;
      info.className = "small";
      hideMessage("predict");
      showPredictJob(job);
      watchJob("predict", job.id, "prediction progress", showPredictJob, predictEnded);
    } catch (err) {
      showError(`predicting ${sceneId} with version ${version}`, err);
    } finally {
      updatePredictButton();
    }
  }

  function showPredictJob(job) {
    state.predict.job = job;
    const st = $("predict-state");
    st.textContent = job.state;
    st.dataset.job = String(job.id);
    const bits = progressBits(job);
    $("predict-progress").textContent = bits.length ? bits.join(" · ") : WAITING_TEXT[job.state] || "";
    updatePredictButton();
  }

  function predictEnded(job) {
    const p = state.predict;
    const info = $("predict-info");
    if (job.state === "SUCCEEDED") {
      const result = job.result || {};
      const item = (result.scenes || [])[0] || {};
      const version = result.version ?? p.version;
      // The result names the file; without one, the naming rule of docs/studio.md.
      info.textContent = item.output
        ? `label map written beside the scene: ${item.output}`
        : `label map written beside the scene's file as <file name>_${p.project}_v${version}_labels.tif`;
      const counts = item.class_pixels || {};
      const total = Object.values(counts).reduce((a, b) => a + b, 0);
      if (total > 0) {
        const shares = Object.entries(counts).map(([name, n]) => `${name} ${fmtNum((100 * n) / total, 1)}%`);
        info.append(el("div", { class: "muted", text: shares.join(" · ") }));
      }
      info.className = "small";
      if (p.sceneKey === sceneKey()) {
        // The prediction layer now shows this job's label map.
        predictionTiles.clear();
        p.layer = { jobId: job.id, sceneKey: p.sceneKey, version };
        $("layer-prediction").title = `prediction of version ${version} (job ${job.id})`;
        scheduleDraw();
      }
      showMessage(`Prediction of ${p.scene} with version ${version} done: the prediction layer shows it.`, "info", "predict");
    } else if (job.state === "FAILED") {
      info.textContent = `failed: ${job.error || "no reason given"}`;
      info.className = "small error-text";
      showMessage(`Prediction of ${p.scene} failed: ${job.error || "no reason given"}`, "error", "predict");
    } else {
      info.textContent = "cancelled";
      info.className = "small";
    }
  }

  // ------------------------------------------------------------------
  // 10. Input: mouse, wheel, keys; start-up
  // ------------------------------------------------------------------

  let press = null; // {x, y, button, mode: "pan"|"click"|"vertex", moved, view}
  let vertexDrag = null; // {roi, geom, vertex}
  let spaceDown = false;
  let clickArmed = false;
  let viewTimer = null;

  function canvasPos(e) {
    const r = canvas.getBoundingClientRect();
    return [e.clientX - r.left, e.clientY - r.top];
  }

  canvas.addEventListener("pointerdown", (e) => {
    canvas.focus();
    clickArmed = false;
    const [px, py] = canvasPos(e);
    const panFirst = e.button === 1 || spaceDown || state.tool === "pan";
    if (e.button !== 0 && e.button !== 1) return;
    e.preventDefault();
    canvas.setPointerCapture(e.pointerId);
    press = { x: px, y: py, button: e.button, mode: panFirst ? "pan" : "click", moved: false, view: { ...state.view } };
    if (!panFirst && state.tool === "select") {
      const roi = selectedRoi();
      const v = roi ? vertexAt(roi, px, py) : null;
      if (v) {
        const geom = cloneGeom(roi.geom);
        const vs = vertices(geom);
        const idx = vertices(roi.geom).findIndex((w) => w.arr === v.arr && w.i === v.i);
        vertexDrag = { roi, geom, vertex: vs[idx] };
        press.mode = "vertex";
      }
    }
    if (press.mode === "pan") canvas.classList.add("panning");
  });

  canvas.addEventListener("pointermove", (e) => {
    const [px, py] = canvasPos(e);
    updatePositionStatus(px, py);
    state.hover = state.drawing ? screenToScene(px, py) : null;
    if (state.drawing) scheduleDraw();
    if (!press) {
      if (state.tool === "select") {
        const roi = selectedRoi();
        canvas.classList.toggle("over-vertex", !!(roi && vertexAt(roi, px, py)));
      }
      return;
    }
    const dx = px - press.x;
    const dy = py - press.y;
    if (!press.moved && Math.hypot(dx, dy) > DRAG_THRESHOLD_PX) {
      press.moved = true;
      // A drag with a drawing tool pans: clicks draw, drags move the map.
      if (press.mode === "click") {
        press.mode = "pan";
        canvas.classList.add("panning");
      }
    }
    if (!press.moved) return;
    if (press.mode === "pan") {
      state.view = { scale: press.view.scale, ox: press.view.ox + dx, oy: press.view.oy + dy };
      updateZoomStatus();
      scheduleDraw();
    } else if (press.mode === "vertex" && vertexDrag) {
      const [sx, sy] = screenToScene(px, py);
      const s = state.scene;
      vertexDrag.vertex.arr[vertexDrag.vertex.i] = [clamp(sx, 0, s.width), clamp(sy, 0, s.height)];
      // Show the moved shape in place of the old one until the server confirms.
      vertexDrag.roi.geom = vertexDrag.geom;
      scheduleDraw();
    }
  });

  function endPress(e, cancelled) {
    if (!press) return;
    const p = press;
    press = null;
    canvas.classList.remove("panning");
    if (p.mode === "pan" && p.moved) {
      scheduleLive(LIVE_VIEW_DELAY_MS);
    } else if (p.mode === "vertex" && vertexDrag) {
      const drag = vertexDrag;
      vertexDrag = null;
      const original = parseWkt(drag.roi.wkt);
      if (p.moved && !cancelled) {
        drag.roi.geom = original; // the local list changes when the server answers
        commitMove(drag.roi, drag.geom);
      } else {
        drag.roi.geom = original;
      }
      scheduleDraw();
    } else if (p.mode === "click" && !p.moved && !cancelled) {
      clickArmed = true; // the click event that follows does the tool's action
    }
  }

  // The click event (not pointerup) carries `detail`, the click count.
  canvas.addEventListener("click", (e) => {
    if (!clickArmed) return;
    clickArmed = false;
    const [px, py] = canvasPos(e);
    onMapClick(px, py, e.detail || 1);
  });

  canvas.addEventListener("pointerup", (e) => endPress(e, false));
  canvas.addEventListener("pointercancel", (e) => endPress(e, true));
  canvas.addEventListener("dblclick", (e) => e.preventDefault());
  canvas.addEventListener("contextmenu", (e) => e.preventDefault());
  canvas.addEventListener("pointerleave", () => {
    if (state.drawing) {
      state.hover = null;
      scheduleDraw();
    }
  });

  // Clicks per tool. `clicks` is 2 on the second click of a double click, which
  // finishes a line or polygon instead of adding its vertex again.
  function onMapClick(px, py, clicks) {
    if (!state.scene) return;
    const [x, y] = screenToScene(px, py);
    const s = state.scene;
    const inside = x >= 0 && y >= 0 && x <= s.width && y <= s.height;
    switch (state.tool) {
      case "point":
        if (!inside) return;
        createRoi({ type: "POINT", points: [[x, y]], lines: [], polygons: [] });
        break;
      case "line":
      case "polygon":
        if (clicks >= 2 && state.drawing) {
          finishDrawing();
          return;
        }
        if (!inside) return;
        if (!state.drawing || state.drawing.kind !== state.tool) state.drawing = { kind: state.tool, pts: [] };
        state.drawing.pts.push([x, y]);
        scheduleDraw();
        break;
      case "select": {
        const roi = roiAt([x, y]);
        state.selectedId = roi ? roi.id : null;
        updateSelectionButtons();
        scheduleDraw();
        break;
      }
      default:
        break;
    }
  }

  canvas.addEventListener(
    "wheel",
    (e) => {
      e.preventDefault();
      const [px, py] = canvasPos(e);
      // Pixel deltas from trackpads, line deltas from wheels: both become a factor.
      const delta = e.deltaMode === 1 ? e.deltaY * 33 : e.deltaMode === 2 ? e.deltaY * 400 : e.deltaY;
      zoomAt(px, py, Math.exp(-delta * 0.0015));
      clearTimeout(viewTimer);
      viewTimer = setTimeout(() => scheduleLive(LIVE_VIEW_DELAY_MS), 50);
    },
    { passive: false }
  );

  window.addEventListener("keydown", (e) => {
    if (isTyping(e.target)) return;
    const ctrl = e.ctrlKey || e.metaKey;
    const key = e.key;
    if (ctrl && (key === "z" || key === "Z")) {
      e.preventDefault();
      if (e.shiftKey) redo();
      else undo();
      return;
    }
    if (ctrl && (key === "y" || key === "Y")) {
      e.preventDefault();
      redo();
      return;
    }
    if (ctrl || e.altKey) return;
    if (/^[1-9]$/.test(key)) {
      const c = state.project && (state.project.classes || [])[Number(key) - 1];
      if (c) selectClass(c.name);
      return;
    }
    switch (key) {
      case "Escape":
        cancelDrawing();
        break;
      case "Enter":
      case "c":
        if (state.drawing) {
          e.preventDefault();
          finishDrawing();
        }
        break;
      case "Delete":
      case "Backspace":
        if (state.tool === "select" && state.selectedId) {
          e.preventDefault();
          deleteSelected();
        }
        break;
      case " ":
        if (e.target === canvas || e.target === document.body) e.preventDefault();
        spaceDown = true;
        canvas.classList.add("tool-pan");
        break;
      default:
        break;
    }
  });

  window.addEventListener("keyup", (e) => {
    if (e.key === " ") {
      spaceDown = false;
      canvas.classList.toggle("tool-pan", state.tool === "pan");
    }
  });

  function bindControls() {
    $("project").addEventListener("change", (e) => selectProject(e.target.value).catch((err) => showError("project", err)));
    $("scene").addEventListener("change", (e) => selectScene(e.target.value).catch((err) => showError("scene", err)));
    $("reload").addEventListener("click", () => loadProjects(true).catch((err) => showError("reload", err)));
    $("band-mode").addEventListener("change", readBandSelects);
    for (const id of ["band-r", "band-g", "band-b"]) $(id).addEventListener("change", readBandSelects);
    $("stretch").addEventListener("change", (e) => applyStretchMode(e.target.value));
    $("split").addEventListener("change", (e) => {
      state.split = e.target.value;
    });
    for (const b of document.querySelectorAll(".tools button")) b.addEventListener("click", () => selectTool(b.dataset.tool));
    $("brush-width").addEventListener("input", (e) => {
      const w = Number(e.target.value);
      if (Number.isFinite(w) && w > 0) state.brushWidth = w;
    });
    $("undo").addEventListener("click", undo);
    $("redo").addEventListener("click", redo);
    $("delete-roi").addEventListener("click", deleteSelected);
    $("fit").addEventListener("click", fitView);
    for (const name of Object.keys(state.layers)) {
      const box = $(`layer-${name}`);
      const slider = $(`layer-${name}-opacity`);
      const read = () => {
        state.layers[name].visible = box.checked;
        state.layers[name].opacity = Number(slider.value) / 100;
        scheduleDraw();
      };
      box.addEventListener("change", read);
      slider.addEventListener("input", read);
      read();
    }
    $("live").addEventListener("change", (e) => {
      state.live.enabled = e.target.checked;
      if (state.live.enabled) sendLive(false);
      else clearTimeout(state.live.timer);
    });
    $("suggest").addEventListener("click", () => sendLive(true));
    $("suggest-next").addEventListener("click", () => goToSuggestion(state.suggestionIndex + 1));
    $("suggest-prev").addEventListener("click", () => goToSuggestion(state.suggestionIndex - 1));
    $("train").addEventListener("click", startTraining);
    $("train-cancel").addEventListener("click", cancelJob);
    $("predict").addEventListener("click", startPredict);
    $("predict-version").addEventListener("change", () => {
      state.predictChosen = true;
    });
  }

  // For the browser test and the console: coordinate conversions and the state.
  window.sipdStudio = {
    sceneToScreen,
    screenToScene,
    state,
    fitView,
    reloadRois: loadRois,
    tileCount: () => imageTiles.cache.size,
    predictionTileCount: () => predictionTiles.cache.size,
  };

  async function start() {
    bindControls();
    state.brushWidth = Number($("brush-width").value) || 3;
    state.live.enabled = $("live").checked;
    selectTool("pan");
    new ResizeObserver(resizeCanvas).observe($("map-wrap"));
    resizeCanvas();
    await loadSession();
    if (state.signedOut) return;
    try {
      await loadProjects(false);
    } catch (err) {
      showError("projects", err);
    }
    setInterval(() => {
      if (!document.hidden && !state.signedOut) loadRois();
    }, ROI_RELOAD_MS);
  }

  start();
})();
