// The order page's countdown. It counts down from the seconds the server measured when
// it rendered the page (so a wrong clock in the browser cannot shorten or stretch it),
// and at zero says "Order expired" and takes the payment form away. A 3-D Secure
// challenge already under way keeps its form: its outcome (nothing charged, or a charge
// refunded) is still the buyer's to see.
(function () {
  "use strict";
  var timer = document.querySelector("[data-seconds-left]");
  if (!timer) return;
  var display = timer.querySelector("strong");
  var deadline = performance.now() + Number(timer.dataset.secondsLeft) * 1000;

  function clock(seconds) {
    var minutes = Math.floor(seconds / 60);
    var rest = seconds % 60;
    return minutes + ":" + (rest < 10 ? "0" : "") + rest;
  }

  function expire() {
    timer.hidden = true;
    document.querySelectorAll("#payment-form, form.cancel").forEach(function (form) {
      form.hidden = true;
      form.querySelectorAll("button, input").forEach(function (el) { el.disabled = true; });
    });
    var notice = document.querySelector("[data-testid=expired]");
    if (notice) notice.hidden = false;
    var state = document.querySelector("[data-testid=order-state]");
    if (state) state.textContent = "Expired";
  }

  function tick() {
    var left = Math.max(0, Math.ceil((deadline - performance.now()) / 1000));
    display.textContent = clock(left);
    if (left === 0) {
      expire();
      return;
    }
    // Wake just after the next whole second so the display never skips one.
    setTimeout(tick, ((deadline - performance.now()) % 1000) + 20);
  }

  tick();
})();
