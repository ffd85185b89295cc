// Keyboard shortcuts: a/m/u label (or 1/2/3), b goes back, n focuses the note.
document.addEventListener("keydown", (event) => {
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  const typing = event.target.closest && event.target.closest("input, textarea");
  if (typing) {
    if (event.key === "Escape") event.target.blur();
    return;
  }
  const key = event.key.toLowerCase();
  const byNumber = { "1": "a", "2": "m", "3": "u" };
  const wanted = byNumber[key] || key;
  if (wanted === "n") {
    const note = document.getElementById("note");
    if (note) { event.preventDefault(); note.focus(); }
    return;
  }
  const target = document.querySelector(`[data-key="${CSS.escape(wanted)}"]`);
  if (!target) return;
  event.preventDefault();
  target.click();
});
