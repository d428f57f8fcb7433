// Stripe Elements: when a publishable key is configured the card is collected by
// Stripe's own iframe and only a PaymentMethod id (pm_...) reaches our server, which
// payments_svc then charges. Without Stripe.js the form keeps its test-card choice.
(function () {
  "use strict";
  var form = document.getElementById("payment-form");
  if (!form || !form.dataset.stripeKey || typeof Stripe === "undefined") return;
  var stripe = Stripe(form.dataset.stripeKey);
  var card = stripe.elements().create("card");
  card.mount("#card-element");
  var errors = document.getElementById("card-errors");
  var submit = form.querySelector("button[type=submit]");

  card.on("change", function (event) {
    errors.textContent = event.error ? event.error.message : "";
  });

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    submit.disabled = true;
    stripe.createPaymentMethod({ type: "card", card: card }).then(function (result) {
      if (result.error) {
        errors.textContent = result.error.message;
        submit.disabled = false;
        return;
      }
      form.querySelector("input[name=token]").value = result.paymentMethod.id;
      form.submit();
    });
  });
})();
