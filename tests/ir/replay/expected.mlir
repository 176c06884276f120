// Dataflow graph of @g: 6 nodes, 6 streams, 0 fusion group(s)
dataflow.graph @g(%x: tensor<1x32xf32>, %w: tensor<32x16xf32>) -> (@dma_out_to_output) {
  %x = itensor_instance : !itensor<1x4xf32, tensor 1x32, [8] * [4], (d0) -> (0, d0)>  // dma_x_to_matmul_1 -> matmul_1
  %w = itensor_instance : !itensor<4x4xf32, tensor 32x16, [8, 4] * [4, 4], (d0, d1) -> (d0, d1)>  // dma_w_to_matmul_1 -> matmul_1
  %y_2 = itensor_instance : !itensor<1x4xf32, tensor 1x16, [4] * [4], (d0) -> (0, d0)>  // matmul_1 -> reduce_sum_1
  %y_3 = itensor_instance : !itensor<1x4xf32, tensor 1x16, [4] * [4], (d0) -> (0, d0)>  // matmul_1 -> scale_1
  %s = itensor_instance : !itensor<1xf32, tensor 1, [] * [], () -> (0)>  // reduce_sum_1 -> scale_1
  %out = itensor_instance : !itensor<1x4xf32, tensor 1x16, [4] * [4], (d0) -> (0, d0)>  // scale_1 -> dma_out_to_output
  dma_read @dma_x_to_matmul_1() -> (%x) {tensor = %x : tensor<1x32xf32>, role = input}
  dma_read @dma_w_to_matmul_1() -> (%w) {tensor = %w : tensor<32x16xf32>, role = input}
  kernel @matmul_1(%x, %w) -> (%y_2, %y_3) {tiles = [d0: 1x1/u1, d1: 4x4/u4, d2: 8x4/u4r], tile_order = [2, 0, 1], point_order = [2, 0, 1], operands = [0, 1], init0 = 0.0, replays = [0]} {
    %y = linalg.generic @matmul_1 {domain = [1, 16, 32], indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d2)>, affine_map<(d0, d1, d2) -> (d2, d1)>, affine_map<(d0, d1, d2) -> (d0, d1)>], iterator_types = ["parallel", "parallel", "reduction"]} ins(%x : tensor<1x32xf32>, %w : tensor<32x16xf32>) outs(%z : tensor<1x16xf32>) {
    ^bb0(%x: f32, %y: f32, %acc: f32):
      %p = arith.mulf %x, %y : f32
      %s = arith.addf %acc, %p : f32
      linalg.yield %s
    } -> tensor<1x16xf32>
  }
  kernel @reduce_sum_1(%y_2) -> (%s) {tiles = [d0: 1x1/u1, d1: 4x4/u4r], tile_order = [0, 1], point_order = [1, 0], operands = [0], init0 = 0} {
    %s = linalg.generic @reduce_sum_1 {domain = [1, 16], indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0)>], iterator_types = ["parallel", "reduction"]} ins(%y : tensor<1x16xf32>) outs(%e_s : tensor<1xf32>) {
    ^bb0(%a: f32, %acc: f32):
      %p = arith.mulf %a, %a : f32
      %t = arith.addf %acc, %p : f32
      linalg.yield %t
    } -> tensor<1xf32>
  }
  kernel @scale_1(%y_3, %s) -> (%out) {tiles = [d0: 1x1/u1, d1: 4x4/u4], tile_order = [0, 1], point_order = [0, 1], operands = [0, 1]} {
    %out = linalg.generic @scale_1 {domain = [1, 16], indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0)>, affine_map<(d0, d1) -> (d0, d1)>], iterator_types = ["parallel", "parallel"]} ins(%y : tensor<1x16xf32>, %s : tensor<1xf32>) outs(%e_o : tensor<1x16xf32>) {
    ^bb0(%a: f32, %r: f32, %o: f32):
      %q = arith.divf %a, %r : f32
      linalg.yield %q
    } -> tensor<1x16xf32>
  }
  dma_write @dma_out_to_output(%out) -> () {tensor = %out : tensor<1x16xf32>, role = output}
}
