// acorn-globals ships no types: the part this package uses.
declare module 'acorn-globals' {
  import type { Node } from 'acorn';
  interface GlobalReference {
    name: string;
    /** Each read of the name; `parents` runs from the program down to the node itself. */
    nodes: (Node & { parents: Node[] })[];
  }
  function findGlobals(source: string | Node, options?: object): GlobalReference[];
  export default findGlobals;
}
