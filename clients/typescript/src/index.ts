/**
 * @ocupredict/client: the OcuPredict API for browsers and Node (fetch), generated from
 * the service's OpenAPI schema. One class per tag with static methods (Auth.login(),
 * Predict.create(), History.read(), ...), the request/response/error types of every
 * operation, and `configure()` for the base URL and the token refresh.
 */
export * from './client/index.js';
export { client } from './client/client.gen.js';
export { configure, memoryTokens } from './session.js';
export type { ConfigureOptions, TokenStore } from './session.js';
