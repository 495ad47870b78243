// Shutter console: plain JavaScript, no framework, no build step. Every
// view reads the controller's JSON views (/api/v1/..., see
// docs/operations.md) and re-reads them while something runs.
'use strict';

const $ = (sel) => document.querySelector(sel);
let session = null;       // {auth, role, csrf}
let sessionReady = null;  // resolves once `session` is set
let timer = null;         // the pending refresh
let renderSeq = 0;        // drops answers of a page already left

function esc(s) {
  return String(s ?? '').replace(/[&<>"']/g, (c) => ({
    '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;'}[c]));
}
const num = (v) => Number(v ?? 0);
function bytes(n) {
  n = num(n);
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + ' ' + u[i];
}
function dur(ms) {
  ms = num(ms);
  if (ms < 0) return '–';
  if (ms < 1000) return ms + ' ms';
  const s = ms / 1000;
  if (s < 120) return s.toFixed(1) + ' s';
  if (s < 7200) return (s / 60).toFixed(1) + ' min';
  return (s / 3600).toFixed(1) + ' h';
}
// Local time as YYYY-MM-DD HH:MM:SS: the same on every browser, and no
// locale formatter to load (toLocaleString's first call costs a fresh
// page ~50-100 ms on a slow machine).
function when(micros) {
  micros = num(micros);
  if (!micros) return '–';
  const d = new Date(micros / 1000);
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ` +
    `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}
function ago(micros, nowMicros) {
  micros = num(micros);
  if (!micros) return '–';
  return dur((num(nowMicros) - micros) / 1000) + ' ago';
}
// A state as text with its own class (and a symbol from the CSS): never
// colour alone.
function state(s) {
  const short = String(s).replace(/^(SNAPSHOT|PARTITION_TASK)_STATE_/, '')
    .toLowerCase();
  return `<span class="state s-${esc(short)}">${esc(short)}</span>`;
}
const kind = (t) => String(t || 'JOB_TYPE_SNAPSHOT').replace('JOB_TYPE_', '')
  .toLowerCase();
const isRunning = (s) => /RUNNING|PENDING/.test(s);

async function api(path, options) {
  const r = await fetch(path, Object.assign({credentials: 'same-origin'},
                                           options || {}));
  if (r.status === 401) { location.reload(); throw new Error('logged out'); }
  const body = await r.json().catch(() => ({}));
  // Views are fetched while the session is (start): what they draw
  // depends on its role, so none is drawn before it is known.
  if (sessionReady && path !== '/api/v1/session') await sessionReady;
  if (!r.ok) {
    const e = new Error(body.message || r.statusText);
    e.code = body.code; e.leader = body.leader; e.status = r.status;
    throw e;
  }
  return body;
}
async function post(path, body) {
  return api(path, {method: 'POST', body: JSON.stringify(body || {}),
                    headers: {'X-Shutter-CSRF': session.csrf,
                              'Content-Type': 'application/json'}});
}

function banner(text, error) {
  const b = $('#banner');
  b.hidden = !text;
  b.className = error ? 'error' : '';
  b.textContent = text || '';
}
// The leader's console URL, from the controllers any controller lists.
async function leaderConsole() {
  try {
    const r = await api('/api/v1/controllers');
    const l = (r.controllers || []).find((c) => c.role === 'CONTROLLER_ROLE_LEADER');
    return l && /^https?:\/\//.test(l.console_url || '') ? l.console_url : '';
  } catch (e) { return ''; }
}
function showError(e) {
  if (e.leader) {
    banner(`This controller does not lead: the leader is ${e.leader}. ${e.message}`, true);
    leaderConsole().then((url) => {
      const b = $('#banner');
      if (!url || b.hidden) return;
      const a = document.createElement('a');
      a.id = 'leader-console';
      a.href = url;
      a.textContent = ' Open the leader\'s console';
      b.appendChild(a);
    });
  } else {
    banner(`${e.code || 'Error'}: ${e.message}`, true);
  }
}

// ---- Overview ---------------------------------------------------------
async function overview(main) {
  const o = await api('/api/v1/overview');
  const leader = (o.controllers.controllers || [])
    .find((c) => c.role === 'CONTROLLER_ROLE_LEADER');
  if (o.error) {
    main.innerHTML = `<h1>Overview</h1><p class="error">${esc(o.error.message)}</p>`;
    throw Object.assign(new Error(o.error.message), o.error);
  }
  const now = o.now_micros;
  const warn = [];
  if (o.nodes.alive < o.nodes.total) {
    warn.push(`${o.nodes.total - o.nodes.alive} node(s) not heard from`);
  }
  if (o.partitions.leaderless) {
    warn.push(`${o.partitions.leaderless} partition(s) without a leader`);
  }
  // A pin, or the adaptive rule holding a node low for 15 minutes or
  // more (a back-off during one snapshot is the rule working).
  for (const n of (o.limited || []).filter((x) => x.pinned || (num(x.since_micros) && num(now) - num(x.since_micros) >= 15 * 60e6))) {
    warn.push(`node ${n.node_id} held at ${n.limit} of ${n.capacity}` +
              (num(n.since_micros) ? ` for ${ago(n.since_micros, now).replace(' ago', '')}` : '') +
              `: ${n.reason}`);
  }
  for (const n of o.stalled || []) {
    warn.push(`node ${n.node_id}: foreground writes stalled ${dur(num(n.stall_micros) / 1000)} in its last ${dur(n.interval_millis)}`);
  }
  if (num(o.denials)) warn.push(`${num(o.denials)} admin call(s) denied since this controller started (see its log)`);
  for (const s of o.schedules.schedules || []) {
    if (num(s.skipped)) warn.push(`schedule ${s.name}: ${s.skipped} run(s) skipped (${s.last_skip_reason})`);
  }
  let h = '<h1>Overview</h1><div class="cards">';
  h += `<div class="card"><div class="muted">Nodes alive</div><div class="big" id="nodes-alive">${o.nodes.alive} / ${o.nodes.total}</div></div>`;
  h += `<div class="card"><div class="muted">Partitions without a leader</div><div class="big" id="leaderless">${o.partitions.leaderless} of ${o.partitions.total}</div></div>`;
  h += `<div class="card"><div class="muted">Running jobs</div><div class="big" id="running-count">${o.running.length}</div></div>`;
  const lc = o.last_committed;
  h += `<div class="card"><div class="muted">Last committed snapshot</div><div class="big">${lc ? esc(ago(lc.finished_at_micros, now)) : 'none'}</div>${lc ? `<a href="#/jobs/${esc(lc.snapshot_id)}">${esc(lc.snapshot_id)}</a>` : ''}</div>`;
  const gc = o.last_gc, del = o.last_delete;
  h += `<div class="card"><div class="muted">Garbage collection</div><div id="last-gc">${gc ? `${state(gc.state)} ${esc(ago(gc.created_at_micros, now))}` : 'never'}</div>` +
    `<div class="muted">retention: ${del ? `last deletion ${esc(ago(del.created_at_micros, now))} (${esc(del.source_snapshot_id)})` : 'nothing deleted'}</div></div>`;
  h += `<div class="card"><div class="muted">Leader</div><div>${esc(leader ? leader.address : 'none')}</div><div class="muted">answered by ${esc(o.controllers.answered_by)}</div></div>`;
  h += '</div>';
  h += '<h2>Warnings</h2>' + (warn.length ? '<ul id="warnings">' + warn.map((w) => `<li>${esc(w)}</li>`).join('') + '</ul>' : '<p class="muted" id="warnings">None.</p>');
  h += '<h2>Running jobs</h2>';
  if (!o.running.length) {
    h += '<p class="muted">Nothing runs.</p>';
  } else {
    h += '<div class="scroll"><table id="running"><thead><tr><th>Job</th><th>Kind</th><th>State</th><th>Progress</th><th class="num">Done</th><th class="num">ETA</th></tr></thead><tbody>';
    for (const j of o.running) {
      const total = num(j.partitions_total);
      const done = num(j.partitions_published) + num(j.partitions_failed);
      const elapsed = (num(now) - num(j.created_at_micros)) / 1000;
      const eta = done ? elapsed * (total - done) / done : -1;
      h += `<tr><td><a href="#/jobs/${esc(j.snapshot_id)}">${esc(j.snapshot_id)}</a></td><td>${kind(j.type)}</td><td>${state(j.state)}</td>` +
        `<td><div class="bar" role="progressbar" aria-valuemin="0" aria-valuemax="${total}" aria-valuenow="${done}"><span data-w="${total ? 100 * done / total : 0}"></span></div></td>` +
        `<td class="num">${done}/${total}</td><td class="num">${eta < 0 ? '–' : dur(eta)}</td></tr>`;
    }
    h += '</tbody></table></div>';
  }
  h += '<h2>Schedules</h2>' + schedulesTable(o.schedules.schedules || [], now);
  main.innerHTML = h;
  return o.running.length ? 1000 : 3000;
}

function schedulesTable(list, now) {
  if (!list.length) return '<p class="muted">No schedules.</p>';
  let h = '<div class="scroll"><table id="schedules"><thead><tr><th>Name</th><th>Every</th><th>Kind</th><th>Next run</th><th>Last success</th><th class="num">Runs</th><th class="num">Skipped</th><th>Last skip</th><th>Paused</th></tr></thead><tbody>';
  for (const s of list) {
    h += `<tr><td>${esc(s.name)}</td><td>${esc(s.every || s.cron)}</td><td>${kind(s.job)}</td><td>${esc(when(s.next_run_at_micros))}</td>` +
      `<td>${esc(ago(s.last_success_at_micros, now || Date.now() * 1000))}</td><td class="num">${num(s.runs)}</td><td class="num">${num(s.skipped)}</td>` +
      `<td>${esc(s.last_skip_reason || '')}</td><td>${s.paused ? 'paused' : 'no'}</td></tr>`;
  }
  return h + '</tbody></table></div>';
}

// ---- Jobs -------------------------------------------------------------
async function jobs(main, params) {
  const type = params.get('type') || 'snapshot';
  const st = params.get('state') || '';
  const label = params.get('label') || '';
  const limit = Math.max(50, Number(params.get('limit')) || 100);
  if (!main.querySelector('#job-filters')) {
    const opt = (v, cur) => `<option value="${v}"${v === cur ? ' selected' : ''}>${v || 'any'}</option>`;
    main.innerHTML = `<h1>Jobs</h1><form class="filters" id="job-filters">
      <div><label for="f-type">Kind</label><select id="f-type" name="type">${['snapshot', 'restore', 'verify', 'gc', 'delete'].map((v) => opt(v, type)).join('')}</select></div>
      <div><label for="f-state">State</label><select id="f-state" name="state">${['', 'pending', 'running', 'committed', 'failed', 'cancelled', 'partial'].map((v) => opt(v, st)).join('')}</select></div>
      <div><label for="f-label">Label contains</label><input id="f-label" name="label" value="${esc(label)}"></div>
      <button type="submit">Filter</button>
      ${session.role === 'operator' ? '<button type="button" id="create">Take a snapshot now</button>' : ''}
      </form><div id="job-list"></div>`;
    main.querySelector('#job-filters').addEventListener('submit', (ev) => {
      ev.preventDefault();
      const f = new FormData(ev.target);
      location.hash = '#/jobs?' + new URLSearchParams(f).toString();
    });
    const create = main.querySelector('#create');
    if (create) {
      create.addEventListener('click', async () => {
        const label = prompt('Label for the snapshot (optional):', 'console');
        if (label === null) return;
        try {
          const r = await post('/api/v1/snapshots', {label});
          location.hash = '#/jobs/' + r.snapshot_id;
        } catch (e) { showError(e); }
      });
    }
  }
  const q = new URLSearchParams({type, state: st, label, limit: String(limit + 1)});
  const list = await api('/api/v1/jobs?' + q);
  const more = (list.snapshots || []).length > limit;
  const rows = (list.snapshots || []).slice(0, limit);
  let h = `<p class="muted">${rows.length} job(s), newest first.</p>`;
  h += '<div class="scroll"><table id="jobs"><thead><tr><th>Job</th><th>State</th><th>Label</th><th>Created</th><th class="num">Took</th><th class="num">Partitions</th><th class="num hide-narrow">Bytes</th></tr></thead><tbody>';
  for (const j of rows) {
    const took = num(j.finished_at_micros) ? (num(j.finished_at_micros) - num(j.created_at_micros)) / 1000 : -1;
    h += `<tr><td><a href="#/jobs/${esc(j.snapshot_id)}">${esc(j.snapshot_id)}</a></td><td>${state(j.state)}</td><td>${esc(j.label)}${j.schedule ? ` <span class="muted">(schedule ${esc(j.schedule)})</span>` : ''}</td>` +
      `<td>${esc(when(j.created_at_micros))}</td><td class="num">${dur(took)}</td><td class="num">${num(j.partitions_published)}/${num(j.partitions_total)}</td><td class="num hide-narrow">${bytes(j.total_bytes)}</td></tr>`;
  }
  h += '</tbody></table></div>';
  if (more) {
    h += `<div class="pager"><a id="more-jobs" href="#/jobs?${new URLSearchParams({type, state: st, label, limit: String(limit + 100)})}">Show 100 more</a></div>`;
  }
  main.querySelector('#job-list').innerHTML = h;
  return rows.some((j) => isRunning(j.state)) ? 1000 : 5000;
}

// ---- One job: summary, live per-node timeline, partitions -------------
const COLORS = {p: '#1a7f37', r: '#0969da', f: '#cf222e', w: '#9a6700',
                q: '#8c959f', c: '#57606a', '?': '#8c959f'};
const MAX_LANE_NODES = 50;
const NAMES = {p: 'published', r: 'running', f: 'failed', w: 'waiting',
               q: 'queued', c: 'cancelled', '?': 'unknown'};
// A waiting task is drawn in the colour of what it waits for.
const WAIT_COLORS = {leader: '#bc4c00', node: '#8250df',
                     'garbage collection': '#6e5a2b', retry: '#9a6700',
                     restart: '#57606a'};

// Tasks of each node in slot lanes: a task goes to the first lane free
// when it starts (interval partitioning), so lanes = peak concurrency. A
// lane that frees up to 25 ms (or a tenth of the task, if less) after the
// task starts still takes it: a checkpoint sent ahead to its node starts
// there as the previous one ends, and its recorded start (the controller's
// clock less the node's wait) is off by the messages' latency.
function lanes(tl) {
  const byNode = tl.nodes.map(() => []);
  for (const t of tl.tasks) if (t[1] >= 0 && t[2] >= 0) byNode[t[1]].push(t);
  return byNode.map((tasks) => {
    tasks.sort((a, b) => a[2] - b[2]);
    const ends = [];
    const placed = tasks.map((t) => {
      const slack = Math.min(25, t[3] / 10);
      let lane = ends.findIndex((e) => e <= t[2] + slack);
      if (lane < 0) { lane = ends.length; ends.push(0); }
      ends[lane] = t[2] + Math.max(t[3], 1);
      return {t, lane};
    });
    return {placed, lanes: Math.max(ends.length, 1),
            end: tasks.reduce((m, t) => Math.max(m, t[2] + t[3]), 0)};
  }).map((n, i) => Object.assign(n, {name: tl.nodes[i]}));
}

function drawTimeline(canvas, tl, layout) {
  const laneH = 8, gap = 6, left = 110;
  const rows = layout.reduce((s, n) => s + n.lanes, 0);
  const height = Math.max(40, rows * laneH + layout.length * gap + 24);
  const width = canvas.clientWidth || 1000;
  const dpr = window.devicePixelRatio || 1;
  canvas.width = width * dpr; canvas.height = height * dpr;
  canvas.style.height = height + 'px';
  const g = canvas.getContext('2d');
  g.scale(dpr, dpr);
  g.clearRect(0, 0, width, height);
  const span = Math.max(1, layout.reduce((m, n) => Math.max(m, n.end), 0),
                        (num(tl.now_micros) - num(tl.created_at_micros)) / 1000 * (isRunning(tl.state) ? 1 : 0));
  const x = (ms) => left + (width - left - 8) * ms / span;
  g.font = '11px sans-serif';
  let y = 4;
  const lastEnd = layout.reduce((m, n) => Math.max(m, n.end), 0);
  layout.forEach((n) => {
    g.fillStyle = '#1b1f24';
    const mark = n.end === lastEnd && lastEnd > 0 && !isRunning(tl.state) ? ' ★' : '';
    g.fillText(n.name + mark, 4, y + 9);
    for (const {t, lane} of n.placed) {
      g.fillStyle = (t[4] === 'w' && WAIT_COLORS[t[6]]) || COLORS[t[4]] || '#8c959f';
      g.fillRect(x(t[2]), y + lane * laneH, Math.max(1, x(t[2] + t[3]) - x(t[2])), laneH - 2);
    }
    y += n.lanes * laneH + gap;
  });
  g.fillStyle = '#57606a';
  g.fillText('0', left, height - 6);
  g.fillText(dur(span), width - 60, height - 6);
}

function histogram(tasks) {
  const ds = tasks.filter((t) => t[4] === 'p' && t[3] >= 0).map((t) => t[3]);
  if (!ds.length) return '<p class="muted">No finished task yet.</p>';
  const max = Math.max(...ds), min = Math.min(...ds);
  const n = 10, w = Math.max(1, (max - min) / n);
  const counts = new Array(n).fill(0);
  for (const d of ds) counts[Math.min(n - 1, Math.floor((d - min) / w))]++;
  const top = Math.max(...counts);
  let h = '<table id="histogram"><thead><tr><th>Duration</th><th class="num">Tasks</th><th></th></tr></thead><tbody>';
  // Narrow bins are labelled in milliseconds, so their edges differ.
  const label = (ms) => (max - min < 10000 ? Math.round(ms) + ' ms' : dur(Math.round(ms)));
  counts.forEach((c, i) => {
    h += `<tr><td>${label(min + i * w)} – ${label(min + (i + 1) * w)}</td><td class="num">${c}</td><td><div class="bar"><span data-w="${100 * c / top}"></span></div></td></tr>`;
  });
  return h + '</tbody></table>';
}

async function job(main, id, params) {
  const pageToken = params.get('page') || '';
  const pstate = params.get('pstate') || '';
  const q = new URLSearchParams({page_size: '100', page_token: pageToken, state: pstate});
  const [d, tl] = await Promise.all([
    api(`/api/v1/jobs/${encodeURIComponent(id)}?` + q),
    api(`/api/v1/jobs/${encodeURIComponent(id)}/timeline`)]);
  // Where a load's time goes (the page-cost benchmark prints the marks).
  performance.mark('job-data');
  const s = d.snapshot, sum = d.summary;
  const total = num(sum.partitions_total);
  const done = num(sum.partitions_published) + num(sum.partitions_failed);
  const running = isRunning(s.state);
  // Past MAX_LANE_NODES nodes only the ones that finish last are drawn
  // and listed (the stragglers are what a slow snapshot is about); the
  // page stays small and quick at 1,000 nodes.
  const all = lanes(tl);
  const layout = all.length > MAX_LANE_NODES
    ? [...all].sort((x, y) => y.end - x.end).slice(0, MAX_LANE_NODES) : all;
  const lastEnd = all.reduce((m, n) => Math.max(m, n.end), 0);
  let h = `<h1>${esc(kind(s.type))} <span id="job-id">${esc(s.snapshot_id)}</span> ${state(s.state)}</h1>`;
  h += '<div class="cards">';
  h += `<div class="card"><div class="muted">Progress</div><div class="big" id="progress">${done}/${total}</div><div class="bar" role="progressbar" aria-valuemin="0" aria-valuemax="${total}" aria-valuenow="${done}"><span data-w="${total ? 100 * done / total : 0}"></span></div></div>`;
  h += `<div class="card"><div class="muted">Partitions</div><div id="counts">${num(sum.partitions_published)} published, ${num(sum.partitions_running)} running, ${num(sum.partitions_queued)} queued, ${num(sum.partitions_waiting)} waiting, ${num(sum.partitions_failed)} failed</div></div>`;
  h += `<div class="card"><div class="muted">Created</div><div>${esc(when(s.created_at_micros))}</div><div class="muted">label ${esc(s.label || '–')}</div></div>`;
  const up = num(sum.uploaded_bytes), tb = num(sum.total_bytes);
  h += `<div class="card"><div class="muted">Bytes</div><div>${bytes(tb)}</div>` +
    (kind(s.type) === 'snapshot' ? `<div class="muted" id="bytes-split">${bytes(up)} uploaded, ${bytes(Math.max(0, tb - up))} reused${tb ? ` (${(100 * up / tb).toFixed(1)}% new)` : ''}</div>` : '') + '</div>';
  h += '</div>';
  if (s.error) h += `<p class="error" id="job-error">${esc(s.error)}</p>`;
  if (running && session.role === 'operator') {
    h += '<p><button type="button" class="danger" id="cancel">Cancel this job</button></p>';
  }
  const restorable = kind(s.type) === 'snapshot' && /COMMITTED|PARTIAL/.test(s.state);
  if (restorable && session.role === 'operator') {
    h += '<p><button type="button" id="restore">Restore this snapshot…</button></p><section id="restore-plan" hidden></section>';
  }
  h += '<h2>Per-node timeline</h2>';
  h += '<p class="legend">' + Object.keys(NAMES).filter((k) => k !== '?' && k !== 'w').map((k) => `<span><span data-color="${COLORS[k]}">■</span> ${NAMES[k]}</span>`).join('') +
    Object.keys(WAIT_COLORS).map((k) => `<span><span data-color="${WAIT_COLORS[k]}">■</span> waiting for ${k === 'retry' ? 'a retry' : k === 'restart' ? 'a resume' : 'a ' + k}</span>`).join('') + ' ★ last node to finish</p>';
  h += '<canvas id="timeline" role="img" aria-label="Tasks of each node on one time axis"></canvas>';
  if (layout.length < all.length) {
    h += `<p id="lanes-shown">The ${layout.length} of ${all.length} nodes that finish last; the other ${all.length - layout.length} were done by ${dur(layout[layout.length - 1].end)}.</p>`;
  }
  h += '<div class="scroll"><table id="node-lanes"><thead><tr><th>Node</th><th class="num">Tasks</th><th class="num">Running</th><th class="num">Slots used</th><th class="num">Finished at</th><th></th></tr></thead><tbody>';
  layout.forEach((n) => {
    const r = n.placed.filter((p) => p.t[4] === 'r').length;
    h += `<tr><td>${esc(n.name)}</td><td class="num">${n.placed.length}</td><td class="num">${r}</td><td class="num">${n.lanes}</td><td class="num">${r ? 'running' : dur(n.end)}</td><td>${n.end === lastEnd && lastEnd > 0 && !running ? 'last to finish' : ''}</td></tr>`;
  });
  h += '</tbody></table></div>';
  const waiting = tl.tasks.filter((t) => t[4] === 'w');
  const queued = tl.tasks.filter((t) => t[4] === 'q').length;
  if (waiting.length || queued) {
    const why = {};
    for (const t of waiting) why[t[6] || 'unknown'] = (why[t[6] || 'unknown'] || 0) + 1;
    const parts = Object.keys(why).sort().map((k) => `${why[k]} for ${k === 'retry' ? 'a retry' : k === 'restart' ? 'a resume after a controller restart' : k === 'unknown' ? 'a reason not known' : 'a ' + k}`);
    h += `<p id="not-started">${queued} queued (waiting for a slot on their node), ${waiting.length} waiting${parts.length ? ': ' + parts.join(', ') : ''}.</p>`;
  }
  h += '<h2>Task durations</h2>' + histogram(tl.tasks);
  h += `<h2>Partitions</h2><form class="filters" id="pfilter"><div><label for="f-pstate">State</label><select id="f-pstate" name="pstate">${['', 'queued', 'running', 'published', 'failed', 'waiting', 'cancelled'].map((v) => `<option value="${v}"${v === pstate ? ' selected' : ''}>${v || 'any'}</option>`).join('')}</select></div><button type="submit">Show</button></form>`;
  h += '<div class="scroll"><table id="partitions"><thead><tr><th class="num">Partition</th><th>State</th><th>Node</th><th class="num">Attempts</th><th class="num">Took</th><th class="num hide-narrow">Bytes</th><th class="num hide-narrow">Uploaded</th><th class="num hide-narrow">Reused</th><th>Last error</th></tr></thead><tbody>';
  for (const t of s.partitions || []) {
    const w = t.waiting_for ? ` <span class="muted">for ${esc(t.waiting_for)}</span>` : '';
    h += `<tr><td class="num">${t.partition_id}</td><td>${state(t.state)}${w}</td><td>${esc(t.node_id)}</td><td class="num">${t.attempts}</td><td class="num">${dur(t.duration_millis)}</td><td class="num hide-narrow">${bytes(t.total_bytes)}</td><td class="num hide-narrow">${bytes(t.uploaded_bytes)}</td><td class="num hide-narrow">${bytes(t.reused_bytes)}</td><td>${esc(t.last_error)}</td></tr>`;
  }
  h += '</tbody></table></div><div class="pager">';
  if (pageToken) h += `<a href="#/jobs/${esc(id)}?pstate=${esc(pstate)}">First page</a>`;
  if (d.next_page_token) h += `<a id="next-page" href="#/jobs/${esc(id)}?pstate=${esc(pstate)}&page=${encodeURIComponent(d.next_page_token)}">Next page</a>`;
  h += '</div>';
  performance.mark('job-html');
  main.innerHTML = h;
  drawTimeline(main.querySelector('#timeline'), tl, layout);
  performance.mark('job-drawn');
  main.querySelector('#pfilter').addEventListener('submit', (ev) => {
    ev.preventDefault();
    location.hash = `#/jobs/${id}?pstate=${new FormData(ev.target).get('pstate')}`;
  });
  const restore = main.querySelector('#restore');
  if (restore) restore.addEventListener('click', () => restorePlan(main, id));
  const cancel = main.querySelector('#cancel');
  if (cancel) {
    cancel.addEventListener('click', async () => {
      if (!confirm(`Cancel ${id}? What it published is removed.`)) return;
      try { await post(`/api/v1/jobs/${encodeURIComponent(id)}/cancel`); } catch (e) { showError(e); }
      render();
    });
  }
  return running ? 1000 : 0;
}

// A restore starts only after its plan (a dry run) was shown: who
// restores what, how many bytes, how many at once per node.
async function restorePlan(main, id) {
  const sec = main.querySelector('#restore-plan');
  sec.hidden = false;
  sec.innerHTML = '<p>Planning…</p>';
  let r;
  try {
    r = await post('/api/v1/restores', {snapshot_id: id, dry_run: true});
  } catch (e) {
    sec.innerHTML = `<p class="error" id="restore-error">${esc(e.code || 'Error')}: ${esc(e.message)}</p>`;
    return;
  }
  const p = r.plan || {};
  let h = `<h2>Restore plan</h2><p id="plan-summary">${num(p.partitions)} partition(s), ${bytes(p.total_bytes)} fetched, on ${(p.nodes || []).length} node(s). Each partition's epoch rises: writers of the old epoch are fenced, and its data becomes the snapshot's.</p>`;
  h += '<div class="scroll"><table id="plan"><thead><tr><th>Node</th><th class="num">Partitions</th><th class="num">Bytes</th><th class="num">At once</th></tr></thead><tbody>';
  for (const n of p.nodes || []) {
    h += `<tr><td>${esc(n.node_id)}<div class="muted">${esc(n.address)}</div></td><td class="num">${(n.partition_ids || []).length}</td><td class="num">${bytes(n.bytes)}</td><td class="num">${num(n.concurrency)}</td></tr>`;
  }
  h += '</tbody></table></div><p><button type="button" class="danger" id="restore-start">Start the restore</button> <button type="button" id="restore-close">Close</button></p>';
  sec.innerHTML = h;
  sec.querySelector('#restore-close').addEventListener('click', () => { sec.hidden = true; });
  // One key per plan shown: a click repeated (or retried on a new leader)
  // is the same restore.
  const key = 'console-' + crypto.getRandomValues(new Uint32Array(4)).join('-');
  sec.querySelector('#restore-start').addEventListener('click', async () => {
    try {
      const s = await post('/api/v1/restores', {snapshot_id: id, request_id: key});
      location.hash = '#/jobs/' + s.restore_id;
    } catch (e) { showError(e); }
  });
  sec.querySelector('#restore-start').focus();
}

// ---- Nodes, schedules, repository, controllers -----------------------
async function nodes(main) {
  const r = await api('/api/v1/nodes');
  let h = '<h1>Nodes</h1><div class="scroll"><table id="nodes"><thead><tr><th>Node</th><th>State</th><th class="num">Capacity</th><th class="num">Limit</th><th>Why</th><th class="num">In flight</th><th class="num">Queued</th><th class="num">CPU busy</th><th class="num">Disk busy</th><th class="num">Write p99 / idle</th><th class="num">Leads</th><th>Limit changes</th></tr></thead><tbody>';
  for (const n of r.nodes || []) {
    const l = n.load || {};
    h += `<tr><td>${esc(n.node_id)}<div class="muted">${esc(n.address)}</div></td><td>${state(n.alive ? 'alive' : 'dead')}</td><td class="num">${n.checkpoint_capacity}</td><td class="num">${n.effective_limit}${n.pinned_limit ? ' (pinned)' : ''}</td><td>${esc(n.limit_reason)}</td>` +
      `<td class="num">${n.checkpoints_in_flight}</td><td class="num">${n.checkpoints_queued}</td><td class="num">${(100 * num(l.cpu_busy)).toFixed(0)}%</td><td class="num">${(100 * num(l.disk_busy)).toFixed(0)}%</td>` +
      `<td class="num">${dur(num(l.foreground_write_p99_micros) / 1000)} / ${dur(num(n.idle_write_p99_micros) / 1000)}</td><td class="num">${n.partitions_led}</td><td>${limitChanges(n.limit_changes || [])}</td></tr>`;
  }
  main.innerHTML = h + '</tbody></table></div>';
  return 2000;
}
function limitChanges(list) {
  if (!list.length) return '<span class="muted">none</span>';
  let h = `<details class="limit-changes"><summary>${list.length} change(s), last ${esc(when(list[list.length - 1].at_micros))}</summary><ol>`;
  for (const c of [...list].reverse()) {
    h += `<li>${esc(when(c.at_micros))}: ${num(c.from_limit)} → ${num(c.to_limit)} (${esc(c.reason)})</li>`;
  }
  return h + '</ol></details>';
}
async function schedules(main) {
  const r = await api('/api/v1/schedules');
  main.innerHTML = '<h1>Schedules</h1>' + schedulesTable(r.schedules || []);
  return 5000;
}
async function repository(main) {
  const all = await api('/api/v1/repository');
  const r = all.stats;
  // Manifests are stored too: a lone snapshot saves nothing, not less.
  const saved = num(r.logical_bytes) ? Math.max(0, 1 - num(r.bytes_stored) / num(r.logical_bytes)) : 0;
  let h = `<h1>Repository</h1><p>${esc(r.repository)}</p><div class="cards" id="repo">
    <div class="card"><div class="muted">Committed snapshots</div><div class="big">${num(r.snapshots)}</div><div class="muted">${num(r.uncommitted_snapshots)} uncommitted</div></div>
    <div class="card"><div class="muted">Stored</div><div class="big">${bytes(r.bytes_stored)}</div><div class="muted">${num(r.objects)} objects</div></div>
    <div class="card"><div class="muted">As full copies</div><div class="big">${bytes(r.logical_bytes)}</div><div class="muted">${(100 * saved).toFixed(1)}% saved by sharing</div></div>
    <div class="card"><div class="muted">Incomplete uploads</div><div class="big">${num(r.incomplete_uploads)}</div></div></div>`;
  // Growth: per snapshot, the bytes it uploaded (new) against what it holds.
  const g = all.growth || [];
  h += '<h2>Growth over snapshots</h2>';
  if (!g.length) {
    h += '<p class="muted">No committed snapshot yet.</p>';
  } else {
    const top = Math.max(1, ...g.map((x) => num(x[2])));
    let cum = 0;
    h += '<div class="scroll"><table id="growth"><thead><tr><th>Snapshot</th><th>Created</th><th class="num">Holds</th><th class="num">Uploaded</th><th class="num">New</th><th class="num hide-narrow">Uploaded so far</th><th>Uploaded (dark) of what it holds</th></tr></thead><tbody>';
    for (const [id, created, total, up] of g) {
      cum += num(up);
      h += `<tr><td><a href="#/jobs/${esc(id)}">${esc(id)}</a></td><td>${esc(when(created))}</td><td class="num">${bytes(total)}</td><td class="num">${bytes(up)}</td><td class="num">${num(total) ? (100 * num(up) / num(total)).toFixed(1) + '%' : '–'}</td><td class="num hide-narrow">${bytes(cum)}</td>` +
        `<td><div class="bar stacked"><span data-w="${100 * num(total) / top}"><span class="up" data-w="${num(total) ? 100 * num(up) / num(total) : 0}"></span></span></div></td></tr>`;
    }
    h += '</tbody></table></div>';
  }
  const runs = all.gc_runs || [];
  h += '<h2>Garbage collections</h2>';
  if (!runs.length) {
    h += '<p class="muted">None yet.</p>';
  } else {
    h += '<div class="scroll"><table id="gc-runs"><thead><tr><th>Job</th><th>State</th><th>Started</th><th class="num">Scanned</th><th class="num">Deleted</th><th class="num">Freed</th><th class="num hide-narrow">Too young</th><th class="num hide-narrow">Uploads aborted</th></tr></thead><tbody>';
    for (const x of runs) {
      const res = x.result || {};
      h += `<tr><td><a href="#/jobs/${esc(x.gc_id)}">${esc(x.gc_id)}</a></td><td>${state(x.state)}${x.error ? ` <span class="muted">${esc(x.error)}</span>` : ''}</td><td>${esc(when(x.created_at_micros))}</td><td class="num">${num(res.objects_scanned)}</td><td class="num">${num(res.objects_deleted)}</td><td class="num">${bytes(res.bytes_deleted)}</td><td class="num hide-narrow">${num(res.objects_too_young)}</td><td class="num hide-narrow">${num(res.uploads_aborted)}</td></tr>`;
    }
    h += '</tbody></table></div>';
  }
  main.innerHTML = h;
  return 0;
}
async function controllers(main) {
  const r = await api('/api/v1/controllers');
  let h = `<h1>Controllers</h1><p>Job store ${esc(r.job_store)}; answered by ${esc(r.answered_by)}.</p><div class="scroll"><table id="controllers"><thead><tr><th>Address</th><th>Role</th><th class="num">Term</th><th class="num">Lease left</th><th>Version</th><th>Console</th></tr></thead><tbody>`;
  for (const c of r.controllers || []) {
    const role = c.role === 'CONTROLLER_ROLE_LEADER' ? 'leader' : 'follower';
    h += `<tr><td>${esc(c.address)}</td><td><span class="state s-${role}">${role}</span></td><td class="num">${num(c.term)}</td><td class="num">${num(c.lease_left_ms) < 0 ? '–' : dur(c.lease_left_ms)}</td><td>${esc(c.version)}</td><td>${/^https?:\/\//.test(c.console_url || '') ? `<a href="${esc(c.console_url)}">${esc(c.console_url)}</a>` : '–'}</td></tr>`;
  }
  h += '</tbody></table></div>';
  if ((r.etcd || []).length) {
    h += '<h2>etcd</h2><table><thead><tr><th>Endpoint</th><th>Health</th><th>Version</th><th class="num">DB size</th></tr></thead><tbody>';
    for (const e of r.etcd) h += `<tr><td>${esc(e.endpoint)}</td><td>${e.healthy ? 'healthy' : 'unhealthy: ' + esc(e.error)}</td><td>${esc(e.version)}</td><td class="num">${bytes(e.db_size_bytes)}</td></tr>`;
    h += '</tbody></table>';
  }
  main.innerHTML = h;
  return 3000;
}

// The Content-Security-Policy refuses inline style attributes; widths and
// colours are set through the DOM instead (which it allows).
function applyStyles(root) {
  for (const el of root.querySelectorAll('[data-w]')) el.style.width = el.dataset.w + '%';
  for (const el of root.querySelectorAll('[data-color]')) el.style.color = el.dataset.color;
}

// ---- Router -----------------------------------------------------------
async function render() {
  clearTimeout(timer);
  const seq = ++renderSeq;
  const [path, query] = (location.hash.slice(1) || '/').split('?');
  const params = new URLSearchParams(query || '');
  const parts = path.split('/').filter(Boolean);
  const page = parts[0] || 'overview';
  for (const a of document.querySelectorAll('nav a')) {
    if (a.dataset.page === page) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  const main = $('#main');
  if (main.dataset.page !== path) { main.dataset.page = path; main.innerHTML = '<p>Loading…</p>'; }
  let next = 0;
  try {
    if (page === 'overview') next = await overview(main);
    else if (page === 'jobs' && parts[1]) next = await job(main, decodeURIComponent(parts[1]), params);
    else if (page === 'jobs') next = await jobs(main, params);
    else if (page === 'nodes') next = await nodes(main);
    else if (page === 'schedules') next = await schedules(main);
    else if (page === 'repository') next = await repository(main);
    else if (page === 'controllers') next = await controllers(main);
    else main.innerHTML = '<h1>Not found</h1>';
    if (seq === renderSeq) banner('');
  } catch (e) {
    if (seq !== renderSeq) return;
    showError(e);
    next = 3000;
  }
  applyStyles(main);
  if (seq === renderSeq && next) timer = setTimeout(render, next);
  // For tests and the page-cost benchmark: renders so far, and when the
  // last one was done (ms since navigation started).
  document.body.dataset.renderedAt = String(Math.round(performance.now()));
  document.body.dataset.rendered = String(seq);
}

function showSession() {
  $('#who').textContent = !session.auth ? 'no authentication (--insecure)'
    : session.certificate ? `${session.role} (certificate ${session.certificate})` : `${session.role}`;
  const out = $('#logout');
  // A certificate logs in on every connection: nothing to log out of.
  out.hidden = !session.auth || !!session.certificate;
  out.addEventListener('click', async () => {
    await fetch('/logout', {method: 'POST', headers: {'X-Shutter-CSRF': session.csrf}});
    location.reload();
  });
}

function start() {
  sessionReady = api('/api/v1/session').then((s) => { session = s; showSession(); });
  window.addEventListener('hashchange', () => { $('#main').focus(); render(); });
  render();
}
start();
