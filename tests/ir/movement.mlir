// Dataflow graph of @movement: 8 nodes, 8 streams, 0 fusion group(s)
dataflow.graph @movement(%a: tensor<4x4xf32>) -> (@write) {
  %rows = itensor_instance : !itensor<2x2xf32, tensor 4x4, [2, 2] * [2, 2], (d0, d1) -> (d0, d1)>  // read -> transpose
  %cols = itensor_instance : !itensor<2x2xf32, tensor 4x4, [2, 2] * [2, 2], (d0, d1) -> (d1, d0)>  // transpose -> fork
  %cols_1 = itensor_instance : !itensor<2x2xf32, tensor 4x4, [2, 2] * [2, 2], (d0, d1) -> (d1, d0)>  // fork -> left
  %cols_2 = itensor_instance : !itensor<2x2xf32, tensor 4x4, [2, 2] * [2, 2], (d0, d1) -> (d1, d0)>  // fork -> right
  %left = itensor_instance : !itensor<2x2xf32, tensor 4x2, [2] * [2], (d0) -> (d0, 0)>  // left -> join
  %right = itensor_instance : !itensor<2x2xf32, tensor 4x2, [2] * [2], (d0) -> (d0, 0)>  // right -> join
  %joined = itensor_instance : !itensor<2x2xf32, tensor 4x4, [2, 2] * [2, 2], (d0, d1) -> (d1, d0)>  // join -> batch
  %batched = itensor_instance : !itensor<1x2x2xf32, tensor 1x4x4, [2, 2] * [2, 2], (d0, d1) -> (0, d1, d0)>  // batch -> write
  dma_read @read() -> (%rows) {tensor = %a : tensor<4x4xf32>, role = input}
  itensor_converter @transpose(%rows) -> (%cols) {buffer = 1x4x4, shared_loops = 0, bytes = 64, reason = "tiles in another order"}
  itensor_fork @fork(%cols) -> (%cols_1, %cols_2)
  itensor_chunk @left(%cols_1) -> (%left) {offsets = [0, 0], sizes = [4, 2]}
  itensor_chunk @right(%cols_2) -> (%right) {offsets = [0, 2], sizes = [4, 2]}
  itensor_concat @join(%left, %right) -> (%joined) {dim = 1}
  itensor_reassociate @batch(%joined) -> (%batched)
  dma_write @write(%batched) -> () {tensor = %out : tensor<4x4xf32>, role = output} {
    %out = tensor.collapse_shape %batched [[0, 1], [2]] : tensor<1x4x4xf32> -> tensor<4x4xf32>
  }
}
