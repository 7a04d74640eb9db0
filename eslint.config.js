// ESLint for the web app (gateway/web/: plain ES modules that the browser runs as they are):
// ESLint's recommended rules, and the app's own (issue 27): what is kept in the browser
// goes through stored.js, elements are made by common.js's element(), and no text is ever
// parsed as HTML.
import js from "@eslint/js";
import globals from "globals";

const STORED = "What the app keeps in the browser goes through stored.js.";
const MADE = "Elements are made by element() (common.js).";
const HTML = "Text is set as text (textContent, element()): never parsed as HTML.";
const AS_HTML = ["innerHTML", "outerHTML", "insertAdjacentHTML"].map((property) => ({ property, message: HTML }));

export default [
  js.configs.recommended,
  {
    files: ["gateway/web/**/*.js"],
    languageOptions: { ecmaVersion: 2024, sourceType: "module", globals: { ...globals.browser } },
    rules: {
      eqeqeq: "error",
      "prefer-const": "error",
      "no-restricted-globals": ["error", { name: "localStorage", message: STORED },
                                { name: "sessionStorage", message: STORED }],
      "no-restricted-properties": ["error", ...AS_HTML,
                                   { object: "window", property: "localStorage", message: STORED },
                                   { object: "window", property: "sessionStorage", message: STORED },
                                   { object: "document", property: "write", message: HTML },
                                   { object: "document", property: "createElement", message: MADE }],
      "no-restricted-syntax": ["error", { selector: "NewExpression[callee.name='Option']", message: MADE }],
    },
  },
  { files: ["gateway/web/stored.js"], rules: { "no-restricted-globals": "off" } },
  { files: ["gateway/web/common.js"], rules: { "no-restricted-properties": ["error", ...AS_HTML] } },
];
