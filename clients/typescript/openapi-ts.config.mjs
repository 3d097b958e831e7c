// @ts-check
/**
 * openapi-ts configuration. The client is generated from the committed snapshot
 * (docs/openapi.json) into src/client/, which is git-ignored: `npm run generate` rebuilds it.
 *
 * One class per OpenAPI tag (Auth, Predict, History, Home, Health) with static methods.
 * Operation ids are "{tag}-{function}", so "history-set_feedback" becomes
 * History.setFeedback() and its types HistorySetFeedbackData / ...Responses / ...Errors.
 */
import { defineConfig } from '@hey-api/openapi-ts';

export default defineConfig({
  input: process.env.OPENAPI_INPUT ?? '../../docs/openapi.json',
  output: {
    path: 'src/client',
    // Node's ES modules need the extension: the e2e scripts run the compiled client.
    importFileExtension: '.js',
  },
  plugins: [
    '@hey-api/client-fetch',
    '@hey-api/typescript',
    {
      name: '@hey-api/sdk',
      operations: {
        // [tag, function] from the operation id: the tag names the class, the function
        // the method.
        strategy: (operation) => [String(operation.operationId).split('-')],
        nesting: 'operationId',
        nestingDelimiters: /-/,
        containerName: { casing: 'PascalCase' },
        methods: 'static',
      },
    },
  ],
});
