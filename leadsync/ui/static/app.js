// leadsync ui: uploads (picked or dropped) go to the server as the request body, with the
// page's CSRF token; everything else is htmx. No inline script: the CSP forbids it.
"use strict";
(function () {
  function csrf() {
    return document.querySelector('meta[name="csrf-token"]').content;
  }
  function stateFor(el) {
    return document.getElementById(el.id === "mapping-file" ? "mapping-state" : "upload-state");
  }
  async function send(url, file, state) {
    state.textContent = "Uploading and checking " + file.name + "…";
    try {
      const r = await fetch(url + "?name=" + encodeURIComponent(file.name), {
        method: "PUT",
        body: file,
        headers: { "X-CSRF-Token": csrf(), Accept: "application/json" },
        credentials: "same-origin",
      });
      const text = await r.text();
      let answer = {};
      try { answer = JSON.parse(text); } catch (e) { answer = { error: text }; }
      if (r.ok && answer.url) { window.location.assign(answer.url); return; }
      state.textContent = "Cannot use " + file.name + ": " + (answer.error || r.status);
      state.classList.add("error");
    } catch (e) {
      state.textContent = "The upload failed: " + e;
      state.classList.add("error");
    }
  }
  document.addEventListener("change", function (ev) {
    const input = ev.target;
    if (input.matches && input.matches("input[type=file]")) {
      const url = input.dataset.upload || input.closest("[data-upload]").dataset.upload;
      if (input.files.length) { send(url, input.files[0], stateFor(input)); }
    }
  });
  document.addEventListener("DOMContentLoaded", function () {
    const zone = document.getElementById("drop");
    if (!zone) { return; }
    ["dragenter", "dragover"].forEach(function (name) {
      zone.addEventListener(name, function (ev) { ev.preventDefault(); zone.classList.add("over"); });
    });
    ["dragleave", "drop"].forEach(function (name) {
      zone.addEventListener(name, function () { zone.classList.remove("over"); });
    });
    zone.addEventListener("drop", function (ev) {
      ev.preventDefault();
      if (ev.dataTransfer.files.length) {
        send(zone.dataset.upload, ev.dataTransfer.files[0], document.getElementById("upload-state"));
      }
    });
  });
})();
