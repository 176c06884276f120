// Dataflow graph of @g: 6 nodes, 5 streams, 0 fusion group(s)
dataflow.graph @g(%x: tensor<8x32xf32>, %w: tensor<32x8xf32>) -> (@dma_y_to_output) {
  %x = itensor_instance : !itensor<4x4xf32, tensor 8x32, [2, 8] * [4, 4], (d0, d1) -> (d0, d1)>  // dma_x_to_exp_1 -> exp_1
  %w = itensor_instance : !itensor<4x4xf32, tensor 32x8, [2, 2, 8] * [4, 4, 4], (d0, d1, d2) -> (d2, d1)>  // dma_w_to_matmul_1 -> matmul_1
  %e = itensor_instance : !itensor<4x4xf32, tensor 8x32, [2, 2, 8] * [4, 4, 4], (d0, d1, d2) -> (d0, d2)>  // conv_exp_1_to_matmul_1 -> matmul_1
  %e_2 = itensor_instance : !itensor<4x4xf32, tensor 8x32, [2, 8] * [4, 4], (d0, d1) -> (d0, d1)>  // exp_1 -> conv_exp_1_to_matmul_1
  %y = itensor_instance : !itensor<4x4xf32, tensor 8x8, [2, 2] * [4, 4], (d0, d1) -> (d0, d1)>  // matmul_1 -> dma_y_to_output
  dma_read @dma_x_to_exp_1() -> (%x) {tensor = %x : tensor<8x32xf32>, role = input}
  dma_read @dma_w_to_matmul_1() -> (%w) {tensor = %w : tensor<32x8xf32>, role = input}
  kernel @exp_1(%x) -> (%e_2) {tiles = [d0: 2x4/u1, d1: 8x4/u1], tile_order = [0, 1], point_order = [0, 1], operands = [0]} {
    %e = linalg.generic @exp_1 {domain = [8, 32], indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0, d1)>], iterator_types = ["parallel", "parallel"]} ins(%x : tensor<8x32xf32>) outs(%e0 : tensor<8x32xf32>) {
    ^bb0(%x: f32, %o: f32):
      %r = math.exp %x : f32
      linalg.yield %r
    } -> tensor<8x32xf32>
  }
  itensor_converter @conv_exp_1_to_matmul_1(%e_2) -> (%e) {buffer = 1x4x32, shared_loops = 1, bytes = 512, reason = "matmul_1 reads %e of exp_1 in another layout: the result re-reads the inner stream 2 times (repeat loop 1)"}
  kernel @matmul_1(%e, %w) -> (%y) {tiles = [d0: 2x4/u1, d1: 2x4/u1, d2: 8x4/u1r], tile_order = [0, 1, 2], point_order = [2, 0, 1], operands = [0, 1], init0 = 0.0} {
    %y = linalg.generic @matmul_1 {domain = [8, 8, 32], indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d2)>, affine_map<(d0, d1, d2) -> (d2, d1)>, affine_map<(d0, d1, d2) -> (d0, d1)>], iterator_types = ["parallel", "parallel", "reduction"]} ins(%e : tensor<8x32xf32>, %w : tensor<32x8xf32>) outs(%z : tensor<8x8xf32>) {
    ^bb0(%x: f32, %y: f32, %acc: f32):
      %p = arith.mulf %x, %y : f32
      %s = arith.addf %acc, %p : f32
      linalg.yield %s
    } -> tensor<8x8xf32>
  }
  dma_write @dma_y_to_output(%y) -> () {tensor = %y : tensor<8x8xf32>, role = output}
}
