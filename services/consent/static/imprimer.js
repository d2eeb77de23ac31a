// The receipt's "Imprimer le reçu" button (services/consent/screens/recu.html).
document.getElementById("imprimer")?.addEventListener("click", () => window.print());
