// Optional: arrow keys follow the page's own previous/next links. Pages work without it.
document.addEventListener("keydown", function (event) {
  if (event.altKey || event.ctrlKey || event.metaKey || event.shiftKey) return;
  var target = event.target;
  if (target && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName))) return;
  var key = event.key === "ArrowLeft" ? "prev" : event.key === "ArrowRight" ? "next" : null;
  if (!key) return;
  // Inside a box that scrolls sideways (a wide grid on a phone), the arrows scroll the box.
  for (var box = target; box && box.nodeType === 1; box = box.parentElement) {
    if (box.scrollWidth > box.clientWidth && /auto|scroll/.test(getComputedStyle(box).overflowX)) return;
  }
  var link = document.querySelector('a[data-key="' + key + '"]');
  if (link) window.location.href = link.href;
});
