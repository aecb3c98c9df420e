// Baton dashboard: small behaviours htmx does not cover.
document.addEventListener("htmx:responseError", (event) => {
  // Show the server's error page text rather than failing silently.
  const target = document.getElementById("flash");
  if (target) target.textContent = "The server refused this action (" + event.detail.xhr.status + ").";
});

// ---- runs: a live log pane keeps its newest line in view, unless the reader scrolled up.
document.addEventListener("htmx:sseBeforeMessage", (event) => {
  const pane = event.target;
  if (!(pane instanceof HTMLElement) || !pane.classList.contains("logs")) return;
  pane.dataset.follow = pane.scrollHeight - pane.scrollTop - pane.clientHeight < 48 ? "1" : "";
});
document.addEventListener("htmx:sseMessage", (event) => {
  const pane = event.target;
  if (pane instanceof HTMLElement && pane.classList.contains("logs") && pane.dataset.follow) {
    pane.scrollTop = pane.scrollHeight;
  }
});
// A log pane opens at its end (page load, or another task's pane swapped in).
document.addEventListener("htmx:load", (event) => {
  if (!(event.target instanceof Element)) return;
  event.target.querySelectorAll(".logs").forEach((pane) => { pane.scrollTop = pane.scrollHeight; });
});
// ---- end runs
