// The official AsyncAPI parser on a document: prints its diagnostics as JSON (severity 0 is
// an error, 1 a warning, 2 information, 3 a hint); exits 1 when it cannot make a document.
import { readFileSync } from "node:fs";
import { Parser } from "@asyncapi/parser";

const { document, diagnostics } = await new Parser().parse(readFileSync(process.argv[2], "utf8"));
console.log(JSON.stringify(diagnostics.map(({ code, message, severity, path }) =>
  ({ code, message, severity, path: path.join("/") }))));
process.exit(document ? 0 : 1);
