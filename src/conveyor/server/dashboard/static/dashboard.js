// Conveyor dashboard: live statuses (one EventSource per page), a task's live log, queue
// refresh; confirmed cancel, replay, and stop or start of a version.
// Every request carries the HttpOnly sign-in cookie; scripts never see the token.
"use strict";

const PREFIX = document.body.dataset.prefix;
// The session's CSRF token: every state-changing call sends it (the cookie alone is refused).
const CSRF = document.body.dataset.csrf;
const TERMINAL = new Set(["COMPLETE", "CANCELLED", "TIMEOUT", "EXPIRED", "FAILED"]);
const QUEUE_REFRESH_MS = 2000;
// Log lines (and attempt marks) the page keeps; older ones leave it as new ones come, so a
// task printing tens of thousands of lines stays fast. The API keeps them all.
const LOG_KEEP = 5000;

// Same text as the server's `when` filter.
function when(iso) {
  return iso ? iso.replace("T", " ").split(".")[0].replace(/Z$/, "") + "Z" : "—";
}

// Same text as the server's `duration` filter: blank for none.
function duration(seconds) {
  if (seconds === null || seconds === undefined) return "";
  if (Math.round(seconds * 1000) < 1000) return Math.round(seconds * 1000) + " ms";
  if (Math.round(seconds * 10) < 600) return (Math.round(seconds * 10) / 10).toFixed(1) + " s";
  const whole = Math.round(seconds);
  if (whole < 3600) return `${Math.floor(whole / 60)} min ${whole % 60} s`;
  return `${Math.floor(whole / 3600)} h ${Math.floor((whole % 3600) / 60)} min`;
}

// A fetch that gives up on a signed-out session: the page reloads into the sign-in form.
async function fetchSignedIn(url, options) {
  const response = await fetch(url, Object.assign({ credentials: "same-origin" }, options));
  if (response.status === 401 || response.redirected) {
    window.location.reload();
    throw new Error("signed out");
  }
  return response;
}

// Follow tasks until each reaches a terminal status; `onStatus` gets the API's task JSON.
function watch(ids, onStatus) {
  const open = new Set(ids);
  function connect() {
    if (open.size === 0) return;
    const url = PREFIX + "/live/tasks?ids=" + encodeURIComponent([...open].join(","));
    const source = new EventSource(url);
    source.addEventListener("status", (event) => {
      const task = JSON.parse(event.data);
      if (TERMINAL.has(task.status)) open.delete(task.id);
      onStatus(task);
    });
    source.addEventListener("end", () => source.close());
    source.onerror = () => {
      source.close();
      setTimeout(connect, 2000);
    };
  }
  connect();
}

function setBadge(badge, status) {
  badge.textContent = status;
  badge.className = "badge s-" + status.toLowerCase();
}

function tasksPage() {
  const rows = new Map();
  for (const row of document.querySelectorAll("tr[data-task-id]")) {
    if (!TERMINAL.has(row.dataset.status)) rows.set(row.dataset.taskId, row);
  }
  watch([...rows.keys()], (task) => {
    const row = rows.get(task.id);
    row.dataset.status = task.status;
    setBadge(row.querySelector("[data-field=status]"), task.status);
    for (const field of ["started_at", "ended_at"]) {
      row.querySelector(`[data-field=${field}]`).textContent = when(task[field]);
    }
    row.querySelector("[data-field=attempts]").textContent = task.attempts;
    row.querySelector("[data-field=duration]").textContent = duration(task.duration_s);
    const container = row.querySelector("[data-field=container_id]");
    container.textContent = container.title = task.container_id || "—";
  });
}

function taskPage() {
  const section = document.getElementById("task");
  const id = document.body.dataset.taskId;
  // Refreshes run one after another so a slow answer never overwrites a newer one.
  let chain = Promise.resolve();
  function refresh() {
    chain = chain.then(async () => {
      const response = await fetchSignedIn(`${PREFIX}/tasks/${encodeURIComponent(id)}/detail`);
      if (response.ok) section.innerHTML = await response.text();
    }).catch(() => {});
  }
  watch([id], (task) => {
    setBadge(section.querySelector("[data-field=status]"), task.status);
    refresh();
  });
  // Cancel asks first: only the dialog's "Cancel task" button (returnValue "cancel") sends it;
  // "Keep it" and Escape close the dialog with another value.
  const dialog = document.getElementById("confirm-cancel");
  section.addEventListener("click", (event) => {
    if (!event.target.closest("[data-cancel]")) return;
    dialog.returnValue = "";
    dialog.showModal();
  });
  dialog.addEventListener("close", async () => {
    if (dialog.returnValue !== "cancel") return;
    const button = section.querySelector("[data-cancel]");
    if (button) button.disabled = true;
    const note = document.getElementById("cancel-note");
    note.textContent = "cancelling…";
    const response = await fetchSignedIn(PREFIX + "/live/cancel", {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-Conveyor-CSRF": CSRF },
      body: JSON.stringify({ task_ids: [id] }),
    });
    const answer = await response.json();
    if (!response.ok) note.textContent = answer.error;
    else if (answer.already_finished.length) note.textContent = "already finished";
    refresh();
  });
  replayButton(section, id);
}

// A finished task's Replay asks first, on its own version or the latest; then links to the
// new task (in #replay-note, outside the section each refresh replaces).
function replayButton(section, id) {
  const dialog = document.getElementById("confirm-replay");
  const note = document.getElementById("replay-note");
  section.addEventListener("click", (event) => {
    if (!event.target.closest("[data-replay]")) return;
    dialog.returnValue = "";
    dialog.showModal();
  });
  dialog.addEventListener("close", async () => {
    const choice = dialog.returnValue;
    if (choice !== "same" && choice !== "latest") return;
    note.textContent = "replaying…";
    const query = choice === "latest" ? "?version=latest" : "";
    const response = await fetchSignedIn(PREFIX + "/live/replay" + query, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-Conveyor-CSRF": CSRF },
      body: JSON.stringify({ task_ids: [id] }),
    });
    const answer = await response.json();
    if (!response.ok) {
      note.textContent = answer.error;
      return;
    }
    const link = document.createElement("a");
    link.href = `${PREFIX}/tasks/${encodeURIComponent(answer.task_ids[0])}`;
    link.id = "replay-link";
    link.className = "mono";
    link.textContent = answer.task_ids[0];
    note.replaceChildren("Replayed as ", link);
  });
}

// The same markup as the `log_line` and `attempt_mark` macros; text only, never HTML.
function logLine(line) {
  const row = document.createElement("div");
  row.className = "ln";
  row.dataset.stream = line.stream;
  row.dataset.attempt = line.attempt;
  row.title = `${line.timestamp} · ${line.stream} · attempt ${line.attempt}`;
  const parts = [
    ["t", line.timestamp.slice(11, 19)],
    ["s", line.stream === "stderr" ? "err" : "out"],
    ["x", line.line],
  ];
  for (const [className, text] of parts) {
    const span = document.createElement("span");
    span.className = className;
    span.textContent = text;
    row.append(span);
  }
  return row;
}

function attemptMark(attempt) {
  const mark = document.createElement("div");
  mark.className = "attempt-mark";
  mark.dataset.attempt = attempt;
  mark.textContent = "attempt " + attempt;
  return mark;
}

// The log panel: the lines the server rendered, then (while the task runs) the rest, streamed.
// Lines arriving between two frames go in at once, as one DocumentFragment, and the panel
// follows the bottom unless the reader scrolled up.
function logPanel() {
  const section = document.getElementById("logs");
  const panel = document.getElementById("log");
  const note = document.getElementById("log-note");
  const stream = `${PREFIX}/live/tasks/${encodeURIComponent(document.body.dataset.taskId)}/logs`;
  let shown = panel.querySelectorAll(".ln").length;
  let dropped = 0;
  let attempt = Number(panel.lastElementChild?.dataset.attempt || 1);
  let cursor = section.dataset.cursor;
  let pending = [];
  let ended = null;
  panel.scrollTop = panel.scrollHeight;
  if (!section.dataset.follow) return;

  function tell() {
    const parts = [`${shown + dropped} line(s)`];
    if (dropped) parts.push(`the first ${dropped} left this page (the API keeps them)`);
    parts.push(ended ? "ended " + ended : "following live");
    note.textContent = parts.join(" · ");
  }
  function flush() {
    const atBottom = panel.scrollHeight - panel.scrollTop - panel.clientHeight < 8;
    const fragment = document.createDocumentFragment();
    for (const line of pending) {
      if (line.attempt !== attempt) fragment.append(attemptMark((attempt = line.attempt)));
      fragment.append(logLine(line));
    }
    shown += pending.length;
    pending = [];
    panel.append(fragment);
    while (panel.childElementCount > LOG_KEEP) {
      if (panel.firstElementChild.classList.contains("ln")) {
        shown -= 1;
        dropped += 1;
      }
      panel.firstElementChild.remove();
    }
    if (atBottom) panel.scrollTop = panel.scrollHeight;
    if (ended) panel.dataset.empty = "Nothing printed.";
    tell();
  }
  function connect() {
    const source = new EventSource(`${stream}?cursor=${encodeURIComponent(cursor)}`);
    source.addEventListener("log", (event) => {
      cursor = event.lastEventId;
      pending.push(JSON.parse(event.data));
      if (pending.length === 1) requestAnimationFrame(flush);
    });
    source.addEventListener("end", (event) => {
      source.close();
      ended = JSON.parse(event.data).status;
      if (pending.length === 0) flush();
    });
    // The browser reconnects by itself (sending Last-Event-ID) unless the answer was refused
    // (signed out, too many streams): then a new source starts after the last line seen.
    source.onerror = () => {
      if (source.readyState === EventSource.CLOSED) setTimeout(connect, 2000);
    };
  }
  tell();
  connect();
}

function queuesPage() {
  const body = document.getElementById("queue-rows");
  const stamp = document.getElementById("refreshed");
  async function load() {
    try {
      const response = await fetchSignedIn(PREFIX + "/queues/rows");
      if (response.ok) {
        body.innerHTML = await response.text();
        stamp.textContent = "live, refreshed " + new Date().toLocaleTimeString();
      }
    } catch (error) {
      stamp.textContent = "refresh failed: " + error.message;
    }
  }
  async function refresh() {
    await load();
    setTimeout(refresh, QUEUE_REFRESH_MS);
  }
  setTimeout(refresh, QUEUE_REFRESH_MS);
  versionButtons(body, load);
}

const VERSION_TEXT = {
  stop: "It takes no new tasks (enqueues are refused with 409); its running tasks finish, then " +
    "its containers stop. The queue's unversioned route goes to its latest version still active.",
  start: "It takes tasks again, its containers start as its queue needs them, and its waiting " +
    "tasks run.",
};

// Stop… and Start… on each version ask first (rows are refreshed, so clicks are delegated).
function versionButtons(body, load) {
  const dialog = document.getElementById("confirm-version");
  const note = document.getElementById("version-note");
  let chosen = null;
  body.addEventListener("click", (event) => {
    const button = event.target.closest("[data-version-action]");
    if (!button) return;
    chosen = { ...button.dataset };
    const verb = chosen.versionAction === "stop" ? "Stop" : "Start";
    document.getElementById("confirm-version-title").textContent = `${verb} ${chosen.label}?`;
    document.getElementById("confirm-version-text").textContent = VERSION_TEXT[chosen.versionAction];
    const go = document.getElementById("confirm-version-go");
    go.textContent = verb + " version";
    go.className = chosen.versionAction === "stop" ? "danger" : "";
    dialog.returnValue = "";
    dialog.showModal();
  });
  dialog.addEventListener("close", async () => {
    if (dialog.returnValue !== "go" || !chosen) return;
    const { stubId, versionAction, label } = chosen;
    note.textContent = (versionAction === "stop" ? "stopping " : "starting ") + label + "…";
    const url = `${PREFIX}/live/deployments/${encodeURIComponent(stubId)}/${versionAction}`;
    const response = await fetchSignedIn(url, {
      method: "POST",
      headers: { "X-Conveyor-CSRF": CSRF },
    });
    const answer = await response.json();
    note.textContent = response.ok ? `${label} ${answer.active ? "started" : "stopped"}` : answer.error;
    await load();
  });
}

const PAGES = { tasks: tasksPage, task: () => { taskPage(); logPanel(); }, queues: queuesPage };
const start = PAGES[document.body.dataset.page];
if (start) start();
