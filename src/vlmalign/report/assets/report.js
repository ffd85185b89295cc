// Filters the item cards by words typed into the search box (id, question, split, tags).
(function () {
  "use strict";
  var input = document.getElementById("item-filter");
  var count = document.getElementById("item-count");
  var cards = Array.prototype.slice.call(document.querySelectorAll(".item-card"));
  if (!input || !count) {
    return;
  }
  function apply() {
    var words = input.value.toLowerCase().split(/\s+/).filter(Boolean);
    var shown = 0;
    cards.forEach(function (card) {
      var text = card.getAttribute("data-search") || "";
      var match = words.every(function (word) { return text.indexOf(word) !== -1; });
      card.hidden = !match;
      if (match) {
        shown += 1;
      }
    });
    count.textContent = shown + " of " + cards.length + " items shown";
  }
  input.addEventListener("input", apply);
  apply();
})();
