// The trivial Piscina app's worker module.
export default (x) => x * x;
