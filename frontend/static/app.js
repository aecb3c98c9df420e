// Baton dashboard: small behaviours htmx does not cover.
document.addEventListener("htmx:responseError", (event) => {
  // Show the server's error page text rather than failing silently.
  const target = document.getElementById("flash");
  if (target) target.textContent = "The server refused this action (" + event.detail.xhr.status + ").";
});
