// streetwatch operator dashboard: camera grid, zone editor, live events, case review, statistics, shops.
// Plain browser JavaScript, no dependencies; every call uses the API with the signed-in bearer token.
"use strict";

const VIOLATIONS = ["street_stall", "uncovered_truck", "garbage", "barbecue", "overflowing_bin"];
// Watched only where a zone lists them (cameras reading plates, with a muck-transport register).
const ALL_VIOLATIONS = [...VIOLATIONS, "unlicensed_muck_truck"];
const T = {
  en: {
    subtitle: "Street violations", tab_cameras: "Cameras", tab_review: "Review", tab_stats: "Statistics",
    logout: "Sign out", login_title: "Sign in", token: "API token", login: "Sign in", feed: "Live events",
    all_states: "All states", all_violations: "All violations", all_cameras: "All cameras", unreviewed: "Not reviewed",
    keys: "Keys: J/K next/previous · C confirm · R reject · D dispatch · X close", pick_case: "Pick a case.",
    confirm: "Confirm (C)", reject: "Reject (R)", dispatch: "Dispatch (D)", close: "Close (X)", reason: "Reason",
    reject_ok: "Reject", per_day: "Cases per day", per_camera: "Cases per camera", closure: "Closure rate",
    warnings: "Voice warnings", zones_of: "Zones of", new_zone: "New zone", finish_zone: "Finish polygon",
    delete_zone: "Delete zone", zone_id: "Zone id", save: "Save", cancel: "Cancel",
    ze_hint: "Click to add points; drag a corner to move it.", edit_zones: "Zones", bad_token: "Unknown token",
    no_frame: "no frame yet", saved: "Saved", saved_file: "Saved to the config file", reason_needed: "Give a reason",
    st_registered: "registered", st_dispatched: "dispatched", st_handled: "handled", st_closed: "closed",
    st_rejected: "rejected", confirmed: "confirmed", rejected: "rejected", dwell: "dwell s",
    street_stall: "street stall", uncovered_truck: "uncovered truck", garbage: "garbage", barbecue: "barbecue",
    unlicensed_muck_truck: "unlicensed muck truck", keyframes: "key frames",
    record_down: "main stream down: clips from the substream",
    fullres: "Full resolution",
    show_original: "Original evidence (faces and other plates unmasked; operators)", detecting: "detecting",
    overloaded: "the shared detector is overloaded: every camera detects less often",
    store_down: "The case store (database) does not answer: cameras go on, case writes waiting",
    store_catching_up: "The case store answers again: waiting case writes still to store",
    overflowing_bin: "overflowing bin", live: "live", connecting: "connecting", stalled: "stalled", failed: "failed",
    closed_of: "closed", played: "played", resolved_by_warning: "resolved by warning", no_cases: "No cases",
    load: "load", load_covered: "covered", load_uncovered: "uncovered", load_empty: "empty",
    load_unknown: "unknown", also: "also taken for", by_context: "people with",
    tab_shops: "Shops", new_shop: "New shop", import_shops: "Import CSV / Excel", export_shops: "Export CSV",
    shops_hint: "Violations in a shop's frontage are texted to the shop first (门前三包).", shop_id: "Id",
    shop_name: "Name", shop_phone: "Phone", shop_camera: "Camera", shop_violations: "Answers for",
    shop_record: "Record", shop_address: "Address", frontage_of: "Shop and its frontage", opt_out: "Opted out of texts",
    fe_hint: "Click the pavement's corners in front of the shop; drag a corner to move it.", redraw: "Redraw",
    delete_shop: "Delete shop", edit: "Edit", imported: "imported", set_aside: "rows set aside",
    reminders_n: "reminders", resolved_share: "resolved by reminder", repeats: "repeat offences",
    need_frontage: "Draw the frontage: at least 3 corners", plate: "plate", model: "model", lic_licensed: "licensed",
    lic_unlicensed: "not in the register", lic_expired: "permit expired", lic_not_yet_valid: "permit not yet valid",
    lic_outside_hours: "outside its permitted hours", muck_title: "Licensed muck trucks",
    import_register: "Import register (CSV / Excel)", register_hint: "An import replaces the whole register.",
    company: "Company", permit: "Permit", valid: "Valid", hours: "Hours", company_record: "Company record",
    truck_cases: "truck cases", uncovered_loads: "uncovered", unlicensed_n: "unlicensed", vehicles_n: "vehicles",
  },
  zh: {
    subtitle: "街面违规智能识别", tab_cameras: "摄像头", tab_review: "案件审核", tab_stats: "统计",
    logout: "退出", login_title: "登录", token: "API 令牌", login: "登录", feed: "实时事件",
    all_states: "全部状态", all_violations: "全部类型", all_cameras: "全部摄像头", unreviewed: "未审核",
    keys: "快捷键：J/K 下一条/上一条 · C 确认 · R 驳回 · D 派遣 · X 结案", pick_case: "请选择案件。",
    confirm: "确认 (C)", reject: "驳回 (R)", dispatch: "派遣 (D)", close: "结案 (X)", reason: "驳回原因",
    reject_ok: "驳回", per_day: "每日案件数", per_camera: "各摄像头案件数", closure: "结案率",
    warnings: "语音劝导", zones_of: "区域设置：", new_zone: "新建区域", finish_zone: "完成多边形",
    delete_zone: "删除区域", zone_id: "区域编号", save: "保存", cancel: "取消",
    ze_hint: "单击添加顶点，拖动顶点可移动。", edit_zones: "区域", bad_token: "令牌无效",
    no_frame: "暂无画面", saved: "已保存", saved_file: "已写回配置文件", reason_needed: "请填写驳回原因",
    st_registered: "已立案", st_dispatched: "已派遣", st_handled: "已处置", st_closed: "已结案",
    st_rejected: "已驳回", confirmed: "已确认", rejected: "已驳回", dwell: "停留秒数",
    street_stall: "占道经营", uncovered_truck: "渣土车未覆盖", garbage: "暴露垃圾", barbecue: "露天烧烤",
    unlicensed_muck_truck: "无证渣土车", keyframes: "仅关键帧",
    record_down: "主码流中断：证据取自子码流",
    fullres: "高清抓拍",
    show_original: "原始证据（不打码人脸和其他车牌；仅操作员）", detecting: "检测",
    overloaded: "检测器过载：各摄像头按比例降低检测频率",
    store_down: "案件库（数据库）无响应：摄像头照常检测，等待写入的案件记录",
    store_catching_up: "案件库已恢复：正在写入等待中的案件记录，剩余",
    overflowing_bin: "垃圾桶满溢", live: "在线", connecting: "连接中", stalled: "卡顿", failed: "离线",
    closed_of: "已结案", played: "播放次数", resolved_by_warning: "劝导后消除", no_cases: "暂无案件",
    load: "装载", load_covered: "已覆盖", load_uncovered: "未覆盖", load_empty: "空车",
    load_unknown: "不明", also: "亦可能为", by_context: "人员及",
    tab_shops: "门前三包", new_shop: "新增商户", import_shops: "导入 CSV / Excel", export_shops: "导出 CSV",
    shops_hint: "商户门前责任区内的违规先短信提醒商户整改。", shop_id: "编号", shop_name: "商户名称",
    shop_phone: "联系电话", shop_camera: "摄像头", shop_violations: "责任事项", shop_record: "记录",
    shop_address: "地址", frontage_of: "商户及门前责任区", opt_out: "已退订短信",
    fe_hint: "单击门前责任区的各个角点，拖动角点可移动。", redraw: "重画", delete_shop: "删除商户", edit: "编辑",
    imported: "已导入", set_aside: "行未导入", reminders_n: "次提醒", resolved_share: "提醒后整改",
    repeats: "次重复违规", need_frontage: "请画出责任区（至少3个角点）", plate: "车牌", model: "模型",
    lic_licensed: "已核准", lic_unlicensed: "未在核准名单", lic_expired: "核准已过期", lic_not_yet_valid: "核准未生效",
    lic_outside_hours: "不在核准时段", muck_title: "渣土运输核准车辆", import_register: "导入核准名单（CSV / Excel）",
    register_hint: "导入将替换整个名单。", company: "运输企业", permit: "核准证号", valid: "有效期", hours: "核准时段",
    company_record: "企业记录", truck_cases: "起车辆案件", uncovered_loads: "起未覆盖", unlicensed_n: "起未核准",
    vehicles_n: "辆",
  },
};
const COLORS = { unlicensed_muck_truck: "#a040a0", street_stall: "#2f8cff", uncovered_truck: "#f0b429", garbage: "#2fbf71", barbecue: "#ef4e4e",
  overflowing_bin: "#b57bff" };

let lang = localStorage.getItem("sw.lang") || "zh";
let token = sessionStorage.getItem("sw.token") || "";
let tab = "cameras";
const $ = (id) => document.getElementById(id);
const t = (k) => (T[lang] && T[lang][k]) || T.en[k] || k;
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;",
  '"': "&quot;", "'": "&#39;" })[c]);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function applyI18n() {
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  document.querySelectorAll("[data-i18n]").forEach((e) => { e.textContent = t(e.dataset.i18n); });
  document.querySelectorAll("[data-i18n-ph]").forEach((e) => { e.placeholder = t(e.dataset.i18nPh); });
  $("lang").textContent = lang === "zh" ? "EN" : "中文";
}

class ApiError extends Error {}

async function api(path, opts = {}) {
  const headers = { Authorization: `Bearer ${token}`, ...(opts.headers || {}) };
  if (opts.json !== undefined) { headers["Content-Type"] = "application/json"; opts.body = JSON.stringify(opts.json); }
  const r = await fetch(path, { ...opts, headers });
  if (r.status === 401) { logout(t("bad_token")); throw new ApiError(t("bad_token")); }
  if (!r.ok) {
    let msg = r.statusText;
    try { msg = (await r.json()).error.message; } catch (_) { /* not JSON */ }
    throw new ApiError(msg);
  }
  return r;
}

// ------------------------------------------------------------------ sign in / out
async function login(ev) {
  ev.preventDefault();
  token = $("token").value.trim();
  $("login-error").textContent = "";
  try {
    await api("/api/cameras");
  } catch (e) {
    $("login-error").textContent = e.message;
    return;
  }
  sessionStorage.setItem("sw.token", token);
  start();
}

function logout(message) {
  token = "";
  sessionStorage.removeItem("sw.token");
  $("app").hidden = true; $("tabs").hidden = true; $("logout").hidden = true; $("login").hidden = false;
  $("store-banner").hidden = true;
  if (message) $("login-error").textContent = message;
}

function showTab(name) {
  tab = name;
  document.querySelectorAll("#tabs button").forEach((b) => b.classList.toggle("active", b.dataset.tab === name));
  ["cameras", "review", "stats", "shops"].forEach((n) => { $(`tab-${n}`).hidden = n !== name; });
  if (name === "review") loadQueue();
  if (name === "stats") loadStats();
  if (name === "shops") loadShops();
}

let started = false;
function start() {
  $("login").hidden = true; $("app").hidden = false; $("tabs").hidden = false; $("logout").hidden = false;
  if (started) return;
  started = true;
  cameraLoop();
  eventLoop();
  showTab(tab);
}

// ------------------------------------------------------------------ camera grid
const tiles = new Map(); // id -> {el, frames, at, url}
let cameraList = [];

async function refreshFrame(id, img) {
  try {
    const r = await api(`/api/cameras/${encodeURIComponent(id)}/frame.jpg`);
    if (r.status === 204) return;
    const url = URL.createObjectURL(await r.blob());
    const old = img.dataset.url;
    img.src = url; img.dataset.url = url;
    if (old) URL.revokeObjectURL(old);
  } catch (_) { /* next round */ }
}

async function cameraLoop() {
  while (token) {
    try {
      cameraList = await (await api("/api/cameras")).json();
      renderCameras(cameraList);
    } catch (_) { /* shown by the tiles' state */ }
    storeBanner();
    await sleep(2000);
  }
}

// The case store's state: a banner while the database is away or the case writes that waited are being stored.
async function storeBanner() {
  let r;
  try { r = await (await fetch("/readyz")).json(); } catch (_) { return; }
  const down = r.checks && r.checks.database === false;
  const waiting = r.case_writes_waiting || 0;
  const banner = $("store-banner");
  banner.hidden = !down && waiting === 0;
  banner.classList.toggle("catching-up", !down && waiting > 0);
  banner.textContent = `${t(down ? "store_down" : "store_catching_up")}: ${waiting}`;
}

function renderCameras(list) {
  const grid = $("grid");
  const now = performance.now();
  const seen = new Set();
  for (const c of list) {
    seen.add(c.id);
    let tl = tiles.get(c.id);
    if (!tl) {
      const el = document.createElement("div");
      el.className = "tile"; el.dataset.camera = c.id;
      el.innerHTML = `<img alt=""><div class="bar"><span class="name"></span><span class="fps"></span>` +
        `<span class="badge"></span><button class="zones" data-i18n="edit_zones">${t("edit_zones")}</button></div>`;
      el.querySelector("button.zones").addEventListener("click", () => openZoneEditor(c.id));
      grid.appendChild(el);
      tl = { el, frames: c.frames_decoded, at: now };
      tiles.set(c.id, tl);
    }
    const fps = tl.at < now ? ((c.frames_decoded - tl.frames) * 1000) / (now - tl.at) : 0;
    tl.frames = c.frames_decoded; tl.at = now;
    const nameEl = tl.el.querySelector(".name");
    nameEl.textContent = c.name || c.id;
    nameEl.title = c.model ? `${t("model")} ${c.model}` : "";  // a camera's own site model shows here
    const fpsEl = tl.el.querySelector(".fps");
    const slowed = c.detect_fps && c.detect_fps_now < c.detect_fps - 1e-6;
    fpsEl.textContent = `${fps.toFixed(1)} fps${c.decode === "keyframes" ? ` · ${t("keyframes")}` : ""}` +
      (slowed ? ` · ${t("detecting")} ${c.detect_fps_now.toFixed(2)}/${c.detect_fps} fps` : "") +
      (c.record && c.record_health !== "live" ? ` · ${t("record_down")}` : "");
    fpsEl.title = [c.decode_detail, c.evidence, c.record_detail, slowed ? t("overloaded") : ""]
      .filter(Boolean).join("; ");
    const badge = tl.el.querySelector(".badge");
    badge.className = `badge ${c.health}`; badge.textContent = t(c.health); badge.title = c.detail || "";
    refreshFrame(c.id, tl.el.querySelector("img"));
  }
  for (const [id, tl] of tiles) if (!seen.has(id)) { tl.el.remove(); tiles.delete(id); }
  const sel = $("f-camera");
  for (const c of list) {
    if (![...sel.options].some((o) => o.value === c.id)) sel.add(new Option(c.name || c.id, c.id));
  }
}

// ------------------------------------------------------------------ live events (SSE over fetch, with the token)
function onEvent(name, data) {
  const li = document.createElement("li");
  const time = new Date((data.ts_wall || data.emitted_at || data.at || Date.now() / 1000) * 1000).toLocaleTimeString();
  if (name === "violation") {
    li.className = data.state;
    li.textContent = `${time} ${data.camera}/${data.zone} ${t(data.violation)} · ${data.state}`;
    if (data.state === "start" && tab === "review") loadQueue();
  } else if (name === "camera") {
    li.textContent = `${time} ${data.camera}: ${t(data.state)} ${data.detail || ""}`;
  } else if (name === "case") {
    li.textContent = `${time} ${data.case_id}: ${t(data.review || "") || ""} ${t("st_" + data.state)}`;
  } else {
    return;
  }
  const list = $("events");
  list.prepend(li);
  while (list.children.length > 100) list.lastChild.remove();
}

async function eventLoop() {
  while (token) {
    try {
      const r = await api("/api/events");
      const reader = r.body.getReader();
      const dec = new TextDecoder();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        let i;
        while ((i = buf.indexOf("\n\n")) >= 0) {
          const chunk = buf.slice(0, i); buf = buf.slice(i + 2);
          let name = "message"; let data = "";
          for (const line of chunk.split("\n")) {
            if (line.startsWith("event: ")) name = line.slice(7);
            else if (line.startsWith("data: ")) data += line.slice(6);
          }
          if (data) { try { onEvent(name, JSON.parse(data)); } catch (_) { /* ignore a bad event */ } }
        }
      }
    } catch (_) { /* reconnect */ }
    await sleep(2000);
  }
}

// ------------------------------------------------------------------ review queue
let queue = [];
let current = null;

async function loadQueue() {
  const q = new URLSearchParams({ limit: "200" });
  for (const [k, id] of [["state", "f-state"], ["violation", "f-violation"], ["camera", "f-camera"]]) {
    if ($(id).value) q.set(k, $(id).value);
  }
  try {
    const page = await (await api(`/api/cases?${q}`)).json();
    queue = page.items.filter((c) => !$("f-unreviewed").checked || !c.review);
  } catch (e) { $("case-error").textContent = e.message; return; }
  const ol = $("queue");
  ol.innerHTML = queue.length ? "" : `<li class="empty">${esc(t("no_cases"))}</li>`;
  for (const c of queue) {
    const li = document.createElement("li");
    li.dataset.caseId = c.id;
    li.innerHTML = `<span class="rv">${esc(c.review ? t(c.review) : "")}</span><b>${esc(t(c.violation))}</b> ` +
      `${esc(c.camera)}/${esc(c.zone)}<div class="sub">${esc(new Date(c.created_at).toLocaleString())} · ` +
      `${esc(t("st_" + c.state))} · ${(c.confidence * 100).toFixed(0)}%</div>`;
    li.addEventListener("click", () => selectCase(c.id));
    li.classList.toggle("sel", current && current.id === c.id);
    ol.appendChild(li);
  }
  if ((!current || !queue.some((c) => c.id === current.id)) && queue.length) selectCase(queue[0].id);
}

async function blobUrl(path) {
  const r = await api(path);
  return URL.createObjectURL(await r.blob());
}

async function selectCase(id) {
  $("case-error").textContent = "";
  $("reject-form").hidden = true;
  let c;
  try { c = await (await api(`/api/cases/${id}`)).json(); } catch (e) { $("case-error").textContent = e.message; return; }
  current = c;
  document.querySelectorAll("#queue li").forEach((li) => li.classList.toggle("sel", li.dataset.caseId === id));
  $("detail").querySelector(".empty").hidden = true;
  $("case").hidden = false;
  $("case-title").textContent = `${t(c.violation)} · ${t("st_" + c.state)}` + (c.review ? ` · ${t(c.review)}` : "");
  const d = c.details || {};
  const seen = [
    d.load_state ? `${t("load")}: ${t("load_" + d.load_state)} (${d.load_samples})` : "",
    (d.paths || []).includes("context") ? `${t("by_context")} ${(d.context_objects || []).join(", ")}` : "",
    (d.alternatives || []).length ? `${t("also")} ${d.alternatives.map((a) => t(a.violation)).join(", ")}` : "",
    c.vehicle && c.vehicle.plate ? `${t("plate")} ${c.vehicle.plate}` + (c.vehicle.licence ?
      ` (${t("lic_" + c.vehicle.licence)}${c.vehicle.company ? ", " + c.vehicle.company : ""})` : "") : "",
    c.model ? `${t("model")} ${c.model}` : "",
  ];
  $("case-meta").textContent = [`${c.camera}/${c.zone}`, c.address, new Date(c.created_at).toLocaleString(),
    `${(c.confidence * 100).toFixed(0)}%`, ...seen, c.id].filter(Boolean).join(" · ");
  for (const [kind, el] of [["snapshot", $("case-snapshot")], ["clip", $("case-clip")]]) {
    if (el.dataset.url) URL.revokeObjectURL(el.dataset.url);
    el.removeAttribute("src"); el.dataset.url = "";
    const file = kind === "snapshot" ? c.evidence.fullres || c.evidence.snapshot : c.evidence[kind];
    if (file) {
      const url = file + ($("case-original").checked ? "?original=true" : "");
      blobUrl(url).then((u) => { el.src = u; el.dataset.url = u; })
        .catch((e) => { $("case-error").textContent = e.message; });
    }
  }
  $("case-history").innerHTML = c.history.map((h) =>
    `<li>${esc(new Date(h.at).toLocaleString())} ${esc(h.who)}: ${esc(h.from || "")} → ${esc(h.to)} ${esc(h.note)}</li>`).join("");
}

async function act(fn) {
  if (!current) return;
  $("case-error").textContent = "";
  const id = current.id;
  try { await fn(id); } catch (e) { $("case-error").textContent = e.message; return; }
  const idx = queue.findIndex((c) => c.id === id);
  await loadQueue();
  if (queue.length) selectCase((queue[Math.min(idx, queue.length - 1)] || queue[0]).id);
  else { await selectCase(id); }
}

const review = (verdict, reason = "") => act((id) => api(`/api/cases/${id}/review`, { method: "POST", json: { verdict, reason } }));
const move = (to) => act((id) => api(`/api/cases/${id}/transition`, { method: "POST", json: { to } }));

function askReject() {
  $("reject-form").hidden = false;
  $("reject-reason").focus();
}

function step(delta) {
  if (!queue.length) return;
  const idx = current ? queue.findIndex((c) => c.id === current.id) : -1;
  selectCase(queue[Math.max(0, Math.min(queue.length - 1, idx + delta))].id);
}

document.addEventListener("keydown", (e) => {
  if (tab !== "review" || e.ctrlKey || e.metaKey || e.altKey) return;
  if (["INPUT", "SELECT", "TEXTAREA"].includes(document.activeElement.tagName)) return;
  const k = e.key.toLowerCase();
  const map = { j: () => step(1), k: () => step(-1), c: () => review("confirmed"), r: askReject,
    d: () => move("dispatched"), x: () => move("closed") };
  if (map[k]) { e.preventDefault(); map[k](); }
});

// ------------------------------------------------------------------ statistics (SVG, drawn here)
function svg(w, h, body) { return `<svg viewBox="0 0 ${w} ${h}" width="100%" role="img">${body}</svg>`; }

function legend(names) {
  return `<div class="legend">${names.map((n) => `<span><i style="background:${COLORS[n] || "#888"}"></i>${esc(t(n))}</span>`).join("")}</div>`;
}

function barsH(entries, color) {
  const max = Math.max(1, ...entries.map((e) => e[1]));
  const rowH = 22;
  const body = entries.map(([name, v], i) => {
    const w = (v / max) * 300;
    return `<text x="0" y="${i * rowH + 15}">${esc(name)}</text><rect x="140" y="${i * rowH + 4}" width="${w}" height="14" fill="${color}"/>` +
      `<text x="${145 + w}" y="${i * rowH + 15}">${v}</text>`;
  }).join("");
  return svg(480, Math.max(rowH, entries.length * rowH), body);
}

async function loadStats() {
  let s;
  try { s = await (await api("/api/stats?days=14")).json(); } catch (_) { return; }
  const W = 460; const H = 180; const n = s.days.length; const bw = (W - 30) / n;
  const max = Math.max(1, ...s.days.map((d) => Object.values(s.by_violation[d] || {}).reduce((a, b) => a + b, 0)));
  let body = "";
  s.days.forEach((d, i) => {
    let y = H - 20;
    for (const v of ALL_VIOLATIONS) {
      const c = (s.by_violation[d] || {})[v] || 0;
      if (!c) continue;
      const h = (c / max) * (H - 40);
      y -= h;
      body += `<rect x="${30 + i * bw + 2}" y="${y}" width="${bw - 4}" height="${h}" fill="${COLORS[v]}"><title>${d} ${t(v)}: ${c}</title></rect>`;
    }
    if (i % 2 === 0) body += `<text x="${30 + i * bw}" y="${H - 4}">${d.slice(5)}</text>`;
  });
  body += `<text x="0" y="12">${max}</text><line x1="28" y1="${H - 20}" x2="${W}" y2="${H - 20}" stroke="#2c3a4f"/>`;
  $("chart-daily").innerHTML = svg(W, H, body) + legend(ALL_VIOLATIONS);
  $("chart-camera").innerHTML = barsH(Object.entries(s.by_camera).sort((a, b) => b[1] - a[1]), "#2f8cff");
  const rate = s.closure_rate ?? 0;
  $("chart-closure").innerHTML = svg(W, 60,
    `<rect x="0" y="10" width="${W}" height="22" fill="#2c3a4f"/><rect x="0" y="10" width="${W * rate}" height="22" fill="#2fbf71"/>` +
    `<text x="4" y="50">${t("closed_of")} ${s.closed} / ${s.total} = ${(rate * 100).toFixed(1)}%</text>`) +
    barsH(Object.entries(s.by_state).map(([k, v]) => [t("st_" + k), v]), "#91a1b6");
  const w = s.warnings;
  $("chart-warnings").innerHTML = barsH([[t("played"), w.played], [t("resolved_by_warning"), w.resolved_by_warning]], "#f0b429") +
    `<p class="hint">${w.resolved_rate == null ? "" : `${t("resolved_by_warning")}: ${(w.resolved_rate * 100).toFixed(1)}%`}</p>`;
}

// ------------------------------------------------------------------ zone editor
// The camera's last frame without overlays, for drawing on; the canvas takes its aspect (null: no frame yet).
async function cleanFrame(cameraId, canvas) {
  try {
    const r = await api(`/api/cameras/${encodeURIComponent(cameraId)}/frame.jpg?overlay=false`);
    if (r.status === 204) return null;
    const img = new Image();
    img.src = URL.createObjectURL(await r.blob());
    await img.decode();
    canvas.width = 800; canvas.height = Math.round((800 * img.naturalHeight) / img.naturalWidth);
    return img;
  } catch (_) {
    return null;  // draw on a blank canvas
  }
}

const ze = { camera: null, config: null, zones: [], sel: -1, drawing: null, drag: null, img: null };

async function openZoneEditor(cameraId) {
  $("ze-error").textContent = "";
  try { ze.config = await (await api(`/api/cameras/${encodeURIComponent(cameraId)}/config`)).json(); } catch (e) {
    $("ze-error").textContent = e.message; return;
  }
  ze.camera = cameraId;
  ze.zones = JSON.parse(JSON.stringify(ze.config.zones || []));
  ze.sel = ze.zones.length ? 0 : -1; ze.drawing = null; ze.img = null;
  $("ze-camera").textContent = ze.config.name || cameraId;
  ze.img = await cleanFrame(cameraId, $("ze-canvas"));
  $("zone-editor").showModal();
  zeRender();
}

// Normalised [x, y] <-> canvas pixels, and a click's normalised point (0..1, 3 decimals).
function canvasPx(cv, p) { return [p[0] * cv.width, p[1] * cv.height]; }
function canvasNorm(cv, e) {
  const r = cv.getBoundingClientRect();
  const x = Math.min(1, Math.max(0, (e.clientX - r.left) / r.width));
  const y = Math.min(1, Math.max(0, (e.clientY - r.top) / r.height));
  return [Math.round(x * 1000) / 1000, Math.round(y * 1000) / 1000];
}
// The camera's frame (or a "no frame" note) as the background of a drawing canvas; returns its context.
function canvasBackground(cv, img) {
  const g = cv.getContext("2d");
  g.fillStyle = "#000"; g.fillRect(0, 0, cv.width, cv.height);
  if (img) g.drawImage(img, 0, 0, cv.width, cv.height);
  else { g.fillStyle = "#888"; g.fillText(t("no_frame"), 10, 20); }
  return g;
}
function zePx(p) { return canvasPx($("ze-canvas"), p); }
function zeNorm(e) { return canvasNorm($("ze-canvas"), e); }

function zeRender() {
  const g = canvasBackground($("ze-canvas"), ze.img);
  const polys = ze.zones.map((z, i) => [z.polygon, i === ze.sel, false]);
  if (ze.drawing) polys.push([ze.drawing, true, true]);
  for (const [poly, sel, open] of polys) {
    if (!poly.length) continue;
    g.beginPath();
    poly.forEach((p, i) => { const [x, y] = zePx(p); if (i) g.lineTo(x, y); else g.moveTo(x, y); });
    if (!open) g.closePath();
    g.strokeStyle = sel ? "#ffd000" : "#2f8cff"; g.lineWidth = 2; g.stroke();
    if (!open) { g.fillStyle = sel ? "rgba(255,208,0,.15)" : "rgba(47,140,255,.12)"; g.fill(); }
    if (sel) for (const p of poly) { const [x, y] = zePx(p); g.fillStyle = "#ffd000"; g.fillRect(x - 4, y - 4, 8, 8); }
  }
  const list = $("ze-list");
  list.innerHTML = "";
  ze.zones.forEach((z, i) => {
    const li = document.createElement("li");
    li.textContent = `${z.id} (${(z.violations || VIOLATIONS).map(t).join(", ")})`;
    li.className = i === ze.sel ? "sel" : "";
    li.addEventListener("click", () => { ze.sel = i; zeRender(); });
    list.appendChild(li);
  });
  $("ze-finish").disabled = !ze.drawing || ze.drawing.length < 3;
  zeProps();
}

function zeProps() {
  const z = ze.zones[ze.sel];
  $("ze-props").disabled = !z;
  $("ze-id").value = z ? z.id : "";
  const box = $("ze-violations");
  box.innerHTML = "";
  for (const v of ALL_VIOLATIONS) {
    const on = z ? (z.violations || VIOLATIONS).includes(v) : false;
    const dwell = z && z.dwell_s && z.dwell_s[v] != null ? z.dwell_s[v] : "";
    const row = document.createElement("label");
    row.innerHTML = `<input type="checkbox" data-v="${v}" ${on ? "checked" : ""}><span>${esc(t(v))}</span>` +
      `<input type="number" min="0" max="86400" step="1" data-dwell="${v}" placeholder="${esc(t("dwell"))}" value="${dwell}">`;
    box.appendChild(row);
  }
}

function zeReadProps() {
  const z = ze.zones[ze.sel];
  if (!z) return;
  z.id = $("ze-id").value.trim();
  z.violations = [...document.querySelectorAll("#ze-violations input[data-v]")].filter((i) => i.checked).map((i) => i.dataset.v);
  const dwell = {};
  document.querySelectorAll("#ze-violations input[data-dwell]").forEach((i) => { if (i.value !== "") dwell[i.dataset.dwell] = Number(i.value); });
  z.dwell_s = dwell;
}

function zeHit(pt) {
  const cv = $("ze-canvas"); const r = cv.getBoundingClientRect(); const scale = cv.width / r.width;
  const z = ze.zones[ze.sel];
  if (!z) return -1;
  const [px, py] = zePx(pt);
  return z.polygon.findIndex((p) => { const [x, y] = zePx(p); return Math.hypot(x - px, y - py) < 9 * scale; });
}

function inside(pt, poly) {
  let c = false;
  for (let i = 0, j = poly.length - 1; i < poly.length; j = i++) {
    const [xi, yi] = poly[i]; const [xj, yj] = poly[j];
    if ((yi > pt[1]) !== (yj > pt[1]) && pt[0] < ((xj - xi) * (pt[1] - yi)) / (yj - yi) + xi) c = !c;
  }
  return c;
}

function zeSetup() {
  const cv = $("ze-canvas");
  cv.addEventListener("mousedown", (e) => {
    const pt = zeNorm(e);
    if (ze.drawing) { ze.drawing.push(pt); zeRender(); return; }
    const hit = zeHit(pt);
    if (hit >= 0) { ze.drag = hit; return; }
    const idx = ze.zones.findIndex((z) => inside(pt, z.polygon));
    if (idx >= 0) { zeReadProps(); ze.sel = idx; zeRender(); }
  });
  cv.addEventListener("mousemove", (e) => {
    if (ze.drag == null) return;
    ze.zones[ze.sel].polygon[ze.drag] = zeNorm(e);
    zeRender();
  });
  window.addEventListener("mouseup", () => { ze.drag = null; });
  cv.addEventListener("dblclick", () => zeFinish());
  $("ze-new").addEventListener("click", () => { zeReadProps(); ze.drawing = []; ze.sel = -1; zeRender(); });
  $("ze-finish").addEventListener("click", () => zeFinish());
  $("ze-delete").addEventListener("click", () => {
    if (ze.sel >= 0) { ze.zones.splice(ze.sel, 1); ze.sel = Math.min(ze.sel, ze.zones.length - 1); zeRender(); }
  });
  $("ze-cancel").addEventListener("click", () => $("zone-editor").close());
  $("ze-save").addEventListener("click", zeSave);
  $("ze-props").addEventListener("change", () => { zeReadProps(); zeRender(); });
}

function zeFinish() {
  if (!ze.drawing || ze.drawing.length < 3) return;
  let n = ze.zones.length + 1;
  while (ze.zones.some((z) => z.id === `zone-${n}`)) n++;
  ze.zones.push({ id: `zone-${n}`, polygon: ze.drawing, violations: [...VIOLATIONS], dwell_s: {} });
  ze.drawing = null; ze.sel = ze.zones.length - 1;
  zeRender();
}

async function zeSave() {
  zeReadProps();
  $("ze-error").textContent = "";
  const body = { ...ze.config, zones: ze.zones };
  try {
    const r = await (await api(`/api/cameras/${encodeURIComponent(ze.camera)}`, { method: "PUT", json: body })).json();
    $("ze-error").textContent = r.config_saved ? t("saved_file") : t("saved");
    $("zone-editor").close();
  } catch (e) {
    $("ze-error").textContent = e.message;
  }
}

// ------------------------------------------------------------------ shops (门前三包) and the frontage editor
const SHOP_VIOLATIONS = ["garbage", "street_stall", "barbecue", "overflowing_bin"];
const fe = { shop: null, isNew: true, polygon: [], drag: null, img: null };

async function loadShops() {
  const [shops, stats] = await Promise.all([(await api("/api/shops")).json(), (await api("/api/shop-stats")).json()]);
  const body = $("shops").querySelector("tbody");
  body.innerHTML = "";
  for (const s of shops) {
    const st = stats[s.id];
    const rec = st ? `${st.reminders} ${t("reminders_n")}` + (st.share_resolved == null ? "" :
      ` · ${t("resolved_share")} ${(st.share_resolved * 100).toFixed(0)}%`) + ` · ${st.repeat_offences} ${t("repeats")}` : "";
    const tr = document.createElement("tr");
    tr.dataset.shop = s.id;
    tr.innerHTML = `<td>${esc(s.id)}</td><td>${esc(s.name)}</td><td>${esc(s.phone)}</td><td>${esc(s.camera)}</td>` +
      `<td>${s.violations.map((v) => esc(t(v))).join(", ")}${s.opt_out ? ` · ${esc(t("opt_out"))}` : ""}</td>` +
      `<td class="rec">${esc(rec)}</td><td><button class="edit">${esc(t("edit"))}</button></td>`;
    tr.querySelector("button.edit").addEventListener("click", () => openFrontageEditor(s));
    body.appendChild(tr);
  }
  loadRegister();
}

async function loadRegister() {
  const [vehicles, companies] = await Promise.all([(await api("/api/muck-register")).json(),
    (await api("/api/muck-companies")).json()]);
  const body = $("register").querySelector("tbody");
  body.innerHTML = "";
  for (const v of vehicles) {
    const c = companies[v.company];
    const rec = c ? `${c.truck_cases} ${t("truck_cases")} · ${c.uncovered_loads} ${t("uncovered_loads")} · ` +
      `${c.unlicensed} ${t("unlicensed_n")}` : "";
    const tr = document.createElement("tr");
    tr.dataset.plate = v.plate;
    tr.innerHTML = `<td>${esc(v.plate)}</td><td>${esc(v.company)}</td><td>${esc(v.permit)}</td>` +
      `<td>${esc(v.valid_from)} – ${esc(v.valid_to)}</td><td>${esc(v.hours)}</td><td class="rec">${esc(rec)}</td>`;
    body.appendChild(tr);
  }
}

async function importRegister(file) {
  const xlsx = file.name.toLowerCase().endsWith(".xlsx");
  try {
    const r = await (await api("/api/muck-register-imports", { method: "POST", body: await file.arrayBuffer(),
      headers: { "Content-Type": xlsx ? "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" : "text/csv",
        "X-Filename": encodeURIComponent(file.name) } })).json();
    $("register-msg").textContent = `${r.vehicles} ${t("vehicles_n")}; ${r.errors.length} ${t("set_aside")}` +
      (r.errors.length ? ` — ${r.errors.slice(0, 5).join(" · ")}` : "");
    loadRegister();
  } catch (e) {
    $("register-msg").textContent = e.message;
  }
}

async function feFrame(cameraId) {
  fe.img = await cleanFrame(cameraId, $("fe-canvas"));
  feRender();
}

async function openFrontageEditor(shop) {
  $("fe-error").textContent = "";
  fe.isNew = !shop;
  const cams = cameraList.map((c) => c.id);
  const s = shop || { id: "", name: "", address: "", phone: "", camera: cams[0] || "", frontage: [],
    violations: ["garbage", "street_stall"], opt_out: false };
  if (shop) {  // an operator sees the full number; a viewer cannot save anyway
    try { Object.assign(s, await (await api(`/api/shops/${encodeURIComponent(shop.id)}`)).json()); } catch (_) { /* as listed */ }
  }
  fe.shop = s; fe.polygon = s.frontage.map((p) => [...p]);
  $("fe-id").value = s.id; $("fe-id").disabled = !fe.isNew;
  $("fe-name").value = s.name; $("fe-address").value = s.address; $("fe-phone").value = s.phone;
  $("fe-optout").checked = s.opt_out;
  const sel = $("fe-camera");
  sel.innerHTML = "";
  for (const c of new Set([...cams, s.camera].filter(Boolean))) sel.add(new Option(c, c));
  sel.value = s.camera;
  const box = $("fe-violations");
  box.innerHTML = "";
  for (const v of SHOP_VIOLATIONS) {
    const row = document.createElement("label");
    row.innerHTML = `<input type="checkbox" data-v="${v}" ${s.violations.includes(v) ? "checked" : ""}> ${esc(t(v))}`;
    box.appendChild(row);
  }
  $("fe-delete").hidden = fe.isNew;
  $("frontage-editor").showModal();
  await feFrame(s.camera);
}

function fePx(p) { return canvasPx($("fe-canvas"), p); }
function feNorm(e) { return canvasNorm($("fe-canvas"), e); }

function feRender() {
  const g = canvasBackground($("fe-canvas"), fe.img);
  if (!fe.polygon.length) return;
  g.beginPath();
  fe.polygon.forEach((p, i) => { const [x, y] = fePx(p); if (i) g.lineTo(x, y); else g.moveTo(x, y); });
  g.closePath();
  g.strokeStyle = "#2fbf71"; g.lineWidth = 2; g.stroke();
  g.fillStyle = "rgba(47,191,113,.18)"; g.fill();
  for (const p of fe.polygon) { const [x, y] = fePx(p); g.fillStyle = "#2fbf71"; g.fillRect(x - 4, y - 4, 8, 8); }
}

async function feSave() {
  $("fe-error").textContent = "";
  if (fe.polygon.length < 3) { $("fe-error").textContent = t("need_frontage"); return; }
  const body = { id: $("fe-id").value.trim(), name: $("fe-name").value.trim(), address: $("fe-address").value.trim(),
    phone: $("fe-phone").value.trim(), camera: $("fe-camera").value, frontage: fe.polygon,
    violations: [...document.querySelectorAll("#fe-violations input[data-v]")].filter((i) => i.checked).map((i) => i.dataset.v),
    licence: fe.shop.licence || "", contact: fe.shop.contact || "", opt_out: $("fe-optout").checked };
  try {
    const path = fe.isNew ? "/api/shops" : `/api/shops/${encodeURIComponent(body.id)}`;
    await api(path, { method: fe.isNew ? "POST" : "PUT", json: body });
    $("frontage-editor").close();
    $("shop-msg").textContent = t("saved");
    loadShops();
  } catch (e) {
    $("fe-error").textContent = e.message;
  }
}

async function importShops(file) {
  const xlsx = file.name.toLowerCase().endsWith(".xlsx");
  try {
    const r = await (await api("/api/shop-imports", { method: "POST", body: await file.arrayBuffer(), headers: {
      "Content-Type": xlsx ? "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" : "text/csv",
      "X-Filename": encodeURIComponent(file.name) } })).json();
    $("shop-msg").textContent = `${t("imported")}: ${r.added + r.replaced}; ${r.errors.length} ${t("set_aside")}` +
      (r.errors.length ? ` — ${r.errors.slice(0, 5).join(" · ")}` : "");
    loadShops();
  } catch (e) {
    $("shop-msg").textContent = e.message;
  }
}

async function exportShops() {
  try {
    const url = URL.createObjectURL(await (await api("/api/shops.csv")).blob());
    const a = document.createElement("a");
    a.href = url; a.download = "shops.csv"; a.click();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  } catch (e) {
    $("shop-msg").textContent = e.message;
  }
}

function feSetup() {
  const cv = $("fe-canvas");
  cv.addEventListener("mousedown", (e) => {
    const pt = feNorm(e);
    const [px, py] = fePx(pt);
    const scale = cv.width / cv.getBoundingClientRect().width;
    const hit = fe.polygon.findIndex((p) => { const [x, y] = fePx(p); return Math.hypot(x - px, y - py) < 9 * scale; });
    if (hit >= 0) { fe.drag = hit; return; }
    fe.polygon.push(pt);
    feRender();
  });
  cv.addEventListener("mousemove", (e) => { if (fe.drag != null) { fe.polygon[fe.drag] = feNorm(e); feRender(); } });
  window.addEventListener("mouseup", () => { fe.drag = null; });
  $("fe-clear").addEventListener("click", () => { fe.polygon = []; feRender(); });
  $("fe-camera").addEventListener("change", () => feFrame($("fe-camera").value));
  $("fe-cancel").addEventListener("click", () => $("frontage-editor").close());
  $("fe-save").addEventListener("click", feSave);
  $("fe-delete").addEventListener("click", async () => {
    try {
      await api(`/api/shops/${encodeURIComponent(fe.shop.id)}`, { method: "DELETE" });
      $("frontage-editor").close();
      loadShops();
    } catch (e) { $("fe-error").textContent = e.message; }
  });
  $("shop-new").addEventListener("click", () => openFrontageEditor(null));
  $("shop-import").addEventListener("change", (e) => { const f = e.target.files[0]; if (f) importShops(f); e.target.value = ""; });
  $("shop-export").addEventListener("click", exportShops);
  $("register-import").addEventListener("change", (e) => {
    const f = e.target.files[0]; if (f) importRegister(f); e.target.value = "";
  });
}

// ------------------------------------------------------------------ wiring
function init() {
  applyI18n();
  const fv = $("f-violation");
  for (const v of ALL_VIOLATIONS) fv.add(new Option(t(v), v));
  $("login-form").addEventListener("submit", login);
  $("logout").addEventListener("click", () => logout(""));
  $("lang").addEventListener("click", () => {
    lang = lang === "zh" ? "en" : "zh"; localStorage.setItem("sw.lang", lang); applyI18n();
    [...fv.options].slice(1).forEach((o) => { o.textContent = t(o.value); });
    if (tab === "stats") loadStats();
    if (tab === "shops") loadShops();
  });
  document.querySelectorAll("#tabs button").forEach((b) => b.addEventListener("click", () => showTab(b.dataset.tab)));
  $("filters").addEventListener("change", loadQueue);
  $("act-confirm").addEventListener("click", () => review("confirmed"));
  $("case-original").addEventListener("change", () => { if (current) selectCase(current.id); });
  // The snapshot again at the main stream's full resolution, decoded from the case's clip (operators).
  $("act-fullres").addEventListener("click", () => act((id) => api(`/api/cases/${id}/fullres`, { method: "POST" })));
  $("act-reject").addEventListener("click", askReject);
  $("act-dispatch").addEventListener("click", () => move("dispatched"));
  $("act-close").addEventListener("click", () => move("closed"));
  $("reject-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const reason = $("reject-reason").value.trim();
    if (!reason) { $("case-error").textContent = t("reason_needed"); return; }
    $("reject-reason").value = "";
    review("rejected", reason);
  });
  zeSetup();
  feSetup();
  if (token) api("/api/cameras").then(start).catch(() => logout(""));
}

init();
