// Rater page: every click is sent at once (fetch POST, retried on network errors), keyboard
// shortcuts, and navigation that waits for pending saves so that nothing is lost.
"use strict";
(function () {
  const main = document.getElementById("rate");
  if (!main) return;
  const api = main.dataset.api;
  const slice = main.dataset.slice;
  const cells = Array.from(document.querySelectorAll("fieldset.scale"));
  const status = document.getElementById("status");
  const complete = document.getElementById("complete");
  const pending = new Set();
  let cursor = 0;

  function say(text, bad) {
    status.textContent = text;
    status.classList.toggle("bad", Boolean(bad));
  }

  function highlight(i) {
    cursor = Math.max(0, Math.min(cells.length - 1, i));
    cells.forEach((cell, j) => cell.classList.toggle("current", j === cursor));
    if (cells[cursor]) cells[cursor].scrollIntoView({block: "nearest", inline: "nearest"});
  }

  async function send(body) {
    // The server stores a score idempotently (last value wins), so a retry is always safe.
    for (let attempt = 0; ; attempt++) {
      let response;
      try {
        response = await fetch(api, {
          method: "POST", headers: {"Content-Type": "application/json"},
          body: JSON.stringify(body), cache: "no-store", credentials: "same-origin",
        });
      } catch (err) {
        if (attempt >= 3) throw new Error("the server cannot be reached.");
        await new Promise((done) => setTimeout(done, 400 * (attempt + 1)));
        continue;
      }
      const data = await response.json().catch(() => ({}));
      if (response.ok) return data;
      if (response.status < 500 || attempt >= 3) throw new Error(data.error || "refused (" + response.status + ").");
      await new Promise((done) => setTimeout(done, 400 * (attempt + 1)));
    }
  }

  function save(cell, score) {
    const body = {
      slice: slice, position: Number(cell.dataset.position),
      criterion: cell.dataset.criterion, score: score,
    };
    cell.classList.remove("saved", "failed");
    cell.classList.add("saving");
    // One chain per scale: two quick clicks reach the server in the order they were made.
    const job = (cell.chain || Promise.resolve()).catch(() => {}).then(() => send(body));
    cell.chain = job;
    const tracked = job.then((data) => {
      if (cell.chain === job) {
        cell.classList.remove("saving");
        cell.classList.add("saved");
      }
      complete.textContent = data.complete;
      say("Saved.");
    }, (err) => {
      cell.classList.remove("saving");
      cell.classList.add("failed");
      say("Not saved: " + err.message + " Click the score again to retry.", true);
    }).finally(() => pending.delete(tracked));
    pending.add(tracked);
    return tracked;
  }

  async function go(url) {
    if (!url) return;
    if (pending.size) say("Saving…");
    await Promise.allSettled(Array.from(pending));
    if (document.querySelector("fieldset.scale.failed")) return;  // keep the page: a score is not saved
    window.location.href = url;
  }

  cells.forEach((cell, i) => {
    cell.addEventListener("change", (event) => {
      highlight(i);
      save(cell, Number(event.target.value));
    });
    cell.addEventListener("click", () => highlight(i));
  });

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const key = event.key;
    if (/^[1-5]$/.test(key) && cells.length) {
      event.preventDefault();
      const cell = cells[cursor];
      cell.querySelector('input[value="' + key + '"]').checked = true;
      save(cell, Number(key));
      if (cursor < cells.length - 1) highlight(cursor + 1);
    } else if (key === "ArrowDown") {
      event.preventDefault();
      highlight(cursor + 1);
    } else if (key === "ArrowUp") {
      event.preventDefault();
      highlight(cursor - 1);
    } else if (key === "ArrowRight" || key === "Enter") {
      event.preventDefault();
      go(main.dataset.next);
    } else if (key === "ArrowLeft") {
      event.preventDefault();
      go(main.dataset.prev);
    }
  }, true);

  document.querySelectorAll("a.nav").forEach((link) => link.addEventListener("click", (event) => {
    event.preventDefault();
    go(link.getAttribute("href"));
  }));

  window.addEventListener("beforeunload", (event) => {
    if (pending.size) {
      event.preventDefault();
      event.returnValue = "";
    }
  });

  const open = cells.findIndex((cell) => !cell.querySelector("input:checked"));
  highlight(open < 0 ? 0 : open);
})();
