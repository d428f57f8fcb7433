// Stripe Elements: when a publishable key is configured the card is collected by
// Stripe's own iframe and only a PaymentMethod id (pm_...) reaches our server, which
// payments_svc then charges. Without Stripe.js the form keeps its test-card choice.
//
// A card that asks its holder to authenticate (3-D Secure) comes back as a page with
// the #payment-action form: Stripe.js runs the bank's challenge with the client secret,
// then the form asks our server what came of it.
(function () {
  "use strict";
  if (typeof Stripe === "undefined") return;

  var action = document.getElementById("payment-action");
  if (action && action.dataset.stripeKey) {
    var challenger = Stripe(action.dataset.stripeKey);
    var check = action.querySelector("button[type=submit]");
    check.disabled = true;
    challenger.confirmCardPayment(action.dataset.clientSecret).then(function () {
      // Passed, refused or closed: the server asks Stripe and shows the outcome.
      action.submit();
    });
    return;
  }

  var form = document.getElementById("payment-form");
  if (!form || !form.dataset.stripeKey) return;
  var stripe = Stripe(form.dataset.stripeKey);
  var card = stripe.elements().create("card");
  card.mount("#card-element");
  var errors = document.getElementById("card-errors");
  var submit = form.querySelector("button[type=submit]");

  card.on("change", function (event) {
    errors.textContent = event && event.error ? event.error.message : "";
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
