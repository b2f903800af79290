/** Kept equal to package.json and deno.json by test/cli.test.ts. */
export const VERSION = '0.1.0'
