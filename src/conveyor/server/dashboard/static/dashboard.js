// Conveyor dashboard: live statuses (one EventSource per page), queue refresh, confirmed cancel.
// Every request carries the HttpOnly sign-in cookie; scripts never see the token.
"use strict";

const PREFIX = document.body.dataset.prefix;
// The session's CSRF token: every state-changing call sends it (the cookie alone is refused).
const CSRF = document.body.dataset.csrf;
const TERMINAL = new Set(["COMPLETE", "CANCELLED", "TIMEOUT", "EXPIRED", "FAILED"]);
const QUEUE_REFRESH_MS = 2000;

// Same text as the server's `when` filter.
function when(iso) {
  return iso ? iso.replace("T", " ").split(".")[0].replace(/Z$/, "") + "Z" : "—";
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
}

function queuesPage() {
  const body = document.getElementById("queue-rows");
  const stamp = document.getElementById("refreshed");
  async function refresh() {
    try {
      const response = await fetchSignedIn(PREFIX + "/queues/rows");
      if (response.ok) {
        body.innerHTML = await response.text();
        stamp.textContent = "live, refreshed " + new Date().toLocaleTimeString();
      }
    } catch (error) {
      stamp.textContent = "refresh failed: " + error.message;
    }
    setTimeout(refresh, QUEUE_REFRESH_MS);
  }
  setTimeout(refresh, QUEUE_REFRESH_MS);
}

const PAGES = { tasks: tasksPage, task: taskPage, queues: queuesPage };
const start = PAGES[document.body.dataset.page];
if (start) start();
