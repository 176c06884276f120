// Linalg graph IR of @g
func.func @g(%x: tensor<32x1024xf32>, %m: tensor<1024xf32>, %w: tensor<COLSx1024xi8>) -> (tensor<32xCOLSxi32>) {
  %e_y = tensor.empty() : tensor<32xCOLSxi32>
  %z = linalg.generic @fill_1 {domain = [32, COLS], indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>], iterator_types = ["parallel", "parallel"]} ins() outs(%e_y : tensor<32xCOLSxi32>) {
  ^bb0(%o: i32):
    %c = arith.constant {value = 0} : i32
    linalg.yield %c
  } -> tensor<32xCOLSxi32>
  %y = linalg.generic @matmul_1 {domain = [32, COLS, 1024], indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d2)>, affine_map<(d0, d1, d2) -> (d2)>, affine_map<(d0, d1, d2) -> (d1, d2)>, affine_map<(d0, d1, d2) -> (d0, d1)>], iterator_types = ["parallel", "parallel", "reduction"]} ins(%x : tensor<32x1024xf32>, %m : tensor<1024xf32>, %w : tensor<COLSx1024xi8>) outs(%z : tensor<32xCOLSxi32>) {
  ^bb0(%a: f32, %g: f32, %v: i8, %acc: i32):
    %q = arith.mulf %a, %g : f32
    %t = math.roundeven %q : f32
    %lo = arith.constant {value = -128.0} : f32
    %u = arith.maximumf %t, %lo : f32
    %hi = arith.constant {value = 127.0} : f32
    %r = arith.minimumf %u, %hi : f32
    %i = arith.fptosi %r : i8
    %j = arith.extsi %i : i32
    %k = arith.extsi %v : i32
    %p = arith.muli %j, %k : i32
    %sum = arith.addi %acc, %p : i32
    linalg.yield %sum
  } -> tensor<32xCOLSxi32>
  return %y
}
