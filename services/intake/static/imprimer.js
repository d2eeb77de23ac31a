// The card's "Imprimer la carte" button (services/intake/screens/carte.html).
document.getElementById("imprimer")?.addEventListener("click", () => window.print());
